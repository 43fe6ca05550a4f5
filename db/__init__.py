"""The catalogue: SQLAlchemy models, engine and sessions, queries and the importer."""
