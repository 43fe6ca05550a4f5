"""Search without a database: keyword-query parsing and FTS escaping, exact vector indexes and rank
fusion, and the catalogue's search indexes built from cached embeddings."""
