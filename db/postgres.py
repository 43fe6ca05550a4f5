"""What the catalogue adds to its tables on PostgreSQL: the schema lock several instances take turns
on, and full-text search (a generated, weighted tsvector column with a GIN index)."""

from __future__ import annotations

import unicodedata

from sqlalchemy import Connection, text

# Any constant both sides agree on: the key of the advisory lock held while the schema is created or upgraded.
SCHEMA_LOCK_KEY = 0x6D61726B6574  # "market"

# English stemming as SQLite's porter tokenizer does it, and, like it, no stop words: a query of
# "the" or "it" still finds something, and any query's words all count.
SEARCH_CONFIG = "marketplace_english"
_SEARCH_CONFIG_DDL = (
    "CREATE TEXT SEARCH DICTIONARY marketplace_english_stem (TEMPLATE = snowball, Language = english)",
    f"CREATE TEXT SEARCH CONFIGURATION {SEARCH_CONFIG} (COPY = pg_catalog.english)",
    f"""ALTER TEXT SEARCH CONFIGURATION {SEARCH_CONFIG}
        ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH marketplace_english_stem""",
)


def _diacritic_folds() -> tuple[str, str]:
    """Latin letters with diacritics and their plain letters (é -> e), for translate(): PostgreSQL's
    unaccent is an extension a server may lack, and SQLite's index strips diacritics too."""
    accented, plain = [], []
    for code in range(0xC0, 0x250):
        letter = chr(code)
        decomposed = unicodedata.normalize("NFKD", letter)
        base, marks = decomposed[0], decomposed[1:]
        if marks and base.isascii() and base.isalpha() and all(unicodedata.combining(mark) for mark in marks):
            accented.append(letter)
            plain.append(base)
    return "".join(accented), "".join(plain)


ACCENTED, PLAIN = _diacritic_folds()
_FOLD = str.maketrans(ACCENTED, PLAIN)


def fold_diacritics(text_value: str) -> str:
    """`text_value` as the search vector holds it: the same letters folded."""
    return text_value.translate(_FOLD)


def _folded(column: str) -> str:
    return f"translate(coalesce({column}, ''), '{ACCENTED}', '{PLAIN}')"


# The title weighs as A, the description as B (ranked 1.0 and 0.25: the 4:1 of SQLite's bm25 weights).
_SEARCH_VECTOR_DDL = (
    f"""ALTER TABLE products ADD COLUMN IF NOT EXISTS search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, {_folded("name")}), 'A')
        || setweight(to_tsvector('{SEARCH_CONFIG}'::regconfig, {_folded("description")}), 'B')) STORED""",
    "CREATE INDEX IF NOT EXISTS ix_products_search_vector ON products USING gin (search_vector)",
)


def lock_schema(connection: Connection) -> None:
    """Wait for any other instance's schema step; released when `connection`'s transaction ends."""
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})


def refresh_after_bulk_write(connection: Connection, tables: tuple[str, ...]) -> None:
    """After a bulk write: the rows waiting in the full-text index's pending list merged into it (until
    then every search scans that list: 4x slower on the shared catalogue just imported), and fresh
    planner statistics (a table just filled is otherwise planned as if empty)."""
    if "products" in tables:
        connection.execute(text("SELECT gin_clean_pending_list('ix_products_search_vector'::regclass)"))
    connection.execute(text(f"ANALYZE {', '.join(tables)}"))


def create_search_schema(connection: Connection) -> None:
    """The text search configuration and the products' search vector with its index, where missing."""
    if connection.scalar(text("SELECT count(*) FROM pg_ts_config WHERE cfgname = :name"), {"name": SEARCH_CONFIG}) == 0:
        for statement in _SEARCH_CONFIG_DDL:
            connection.execute(text(statement))
    for statement in _SEARCH_VECTOR_DDL:
        connection.execute(text(statement))
