"""What the catalogue adds to its tables on PostgreSQL: the schema lock several instances take turns
on, and full-text search (a generated, weighted tsvector column with a GIN index).

A filter's rows and a query's matches meet in a bitmap of each: at a million listings the bitmap of one
top-level category (73,000 rows) cost as much as the query's own (10 ms each). Each product therefore
carries its top-level category (`top_category_id`, kept by a trigger whatever sets a label), and each
top-level category has a partial GIN index of its own: a search filtered to a category reads only its
index, whose matches are all in the category."""

from __future__ import annotations

import unicodedata

from sqlalchemy import Connection, text

from core.data.cleaning import CATEGORY_SEPARATOR

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


_TOP_CATEGORY_DDL = (
    "ALTER TABLE products ADD COLUMN IF NOT EXISTS top_category_id integer",
    f"""CREATE OR REPLACE FUNCTION marketplace_top_category_of(category integer) RETURNS integer LANGUAGE sql STABLE AS $$
        SELECT top_level.id FROM categories
        JOIN categories AS top_level ON top_level.depth = 0 AND top_level.path = split_part(categories.path, '{CATEGORY_SEPARATOR}', 1)
        WHERE categories.id = category $$""",
    """CREATE OR REPLACE FUNCTION marketplace_product_top_category() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.top_category_id := marketplace_top_category_of(NEW.category_id); RETURN NEW; END $$""",
)
_TOP_CATEGORY_TRIGGER = """CREATE TRIGGER marketplace_product_top_category
    BEFORE INSERT OR UPDATE OF category_id ON products FOR EACH ROW EXECUTE FUNCTION marketplace_product_top_category()"""


def keyword_index_name(top_category_id: int) -> str:
    return f"ix_products_search_vector_top_{int(top_category_id)}"


def has_column(connection: Connection, table: str, column: str) -> bool:
    query = "SELECT count(*) FROM pg_attribute WHERE attrelid = CAST(:table AS regclass) AND attname = :column"
    return bool(connection.scalar(text(query), {"table": table, "column": column}))


def has_trigger(connection: Connection, table: str, trigger: str) -> bool:
    query = "SELECT count(*) FROM pg_trigger WHERE tgrelid = CAST(:table AS regclass) AND tgname = :trigger"
    return bool(connection.scalar(text(query), {"table": table, "trigger": trigger}))


def lock_schema(connection: Connection) -> None:
    """Wait for any other instance's schema step; released when `connection`'s transaction ends."""
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})


def refresh_after_bulk_write(connection: Connection, tables: tuple[str, ...]) -> None:
    """After a bulk write: the rows waiting in the full-text index's pending list merged into it (until
    then every search scans that list: 4x slower on the shared catalogue just imported), and fresh
    planner statistics (a table just filled is otherwise planned as if empty)."""
    if "categories" in tables:
        create_category_keyword_indexes(connection)
    if "products" in tables:
        for index in connection.scalars(
            text("SELECT indexname FROM pg_indexes WHERE tablename = 'products' AND indexname LIKE 'ix_products_search_vector%'")
        ):
            connection.execute(text("SELECT gin_clean_pending_list(CAST(:index AS regclass))"), {"index": index})
    connection.execute(text(f"ANALYZE {', '.join(tables)}"))


def create_search_schema(connection: Connection) -> None:
    """The text search configuration and the products' search vector with its index, where missing."""
    if connection.scalar(text("SELECT count(*) FROM pg_ts_config WHERE cfgname = :name"), {"name": SEARCH_CONFIG}) == 0:
        for statement in _SEARCH_CONFIG_DDL:
            connection.execute(text(statement))
    for statement in _SEARCH_VECTOR_DDL:
        connection.execute(text(statement))
    column_is_new = not has_column(connection, "products", "top_category_id")
    for statement in _TOP_CATEGORY_DDL:
        connection.execute(text(statement))
    if column_is_new:  # a catalogue made before products carried their top level
        connection.execute(text("UPDATE products SET top_category_id = marketplace_top_category_of(category_id)"))
    if not has_trigger(connection, "products", "marketplace_product_top_category"):
        connection.execute(text(_TOP_CATEGORY_TRIGGER))
    # A price range within a top level without reading the rows: the filter of "Home & Garden under £100".
    connection.execute(text("CREATE INDEX IF NOT EXISTS ix_products_top_category_price ON products (top_category_id, price_pence)"))
    create_category_keyword_indexes(connection)


def create_category_keyword_indexes(connection: Connection) -> None:
    """A partial GIN index per top-level category, where missing (a new top level gets its index after the
    import that brings it; until then its filtered searches use the index over every product)."""
    lock_schema(connection)
    top_level_ids = connection.scalars(text("SELECT id FROM categories WHERE depth = 0 ORDER BY id")).all()
    for top_category_id in top_level_ids:
        connection.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {keyword_index_name(top_category_id)} ON products USING gin (search_vector) "
                f"WHERE top_category_id = {int(top_category_id)}"
            )
        )
