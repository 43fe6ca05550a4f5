"""The HTTP API (FastAPI, served by Uvicorn with `python -m core serve`): classify, search, the catalogue,
the review queue and adding listings, over the same services the pages and the CLI use."""
