"""The catalogue as data, with no model and no database: text cleaning, photo reading and cleaning,
upload checks, the `Catalogue` the models learn from, the split into train/validation/test, and
Markdown escaping of user text."""
