"""Where the models meet the catalogue: search in every mode, listing analysis, training runs
recorded in the database, review-queue scoring and the active model set. Pages, the CLI and the
HTTP API call these; they call `db` and `core`."""
