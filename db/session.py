"""Engine and session creation, SQLite pragmas, and the schema (tables, and the full-text index of each backend)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from db import postgres, vectors
from db.tables import Base

SQLITE_BUSY_TIMEOUT_MS = 10_000

# External-content FTS5 index over products(name, description), kept in step by triggers.
_FTS_DDL = (
    """CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(
        name, description, content='products', content_rowid='pk',
        tokenize='porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER IF NOT EXISTS products_fts_insert AFTER INSERT ON products BEGIN
        INSERT INTO products_fts(rowid, name, description) VALUES (new.pk, new.name, new.description);
    END""",
    """CREATE TRIGGER IF NOT EXISTS products_fts_delete AFTER DELETE ON products BEGIN
        INSERT INTO products_fts(products_fts, rowid, name, description)
        VALUES ('delete', old.pk, old.name, old.description);
    END""",
    """CREATE TRIGGER IF NOT EXISTS products_fts_update AFTER UPDATE OF name, description ON products BEGIN
        INSERT INTO products_fts(products_fts, rowid, name, description)
        VALUES ('delete', old.pk, old.name, old.description);
        INSERT INTO products_fts(rowid, name, description) VALUES (new.pk, new.name, new.description);
    END""",
)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:  # a DB-API connection: untyped
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def safe_database_url(url: str) -> str:
    """The URL without its password (a bug report gets pasted into public places)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is itself worth reporting, minus anything after '@'
        return url.split("@")[-1]


def database_facts(url: str) -> dict[str, str]:
    """What `info` reports of the database: its URL without the password, and its backend."""
    try:
        backend = make_url(url).get_backend_name()
    except Exception:  # noqa: BLE001 - as above
        backend = url.split(":", 1)[0].split("+")[0]
    return {"url": safe_database_url(url), "backend": backend}


def make_engine(database_url: str, *, create_schema: bool = True) -> Engine:
    """An engine for `database_url`; for SQLite the folder is created and pragmas set per connection."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _set_sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if create_schema:
        init_schema(engine)
    return engine


def init_schema(engine: Engine, *, attempts: int = 5) -> None:
    """Create missing tables and columns and the full-text index (FTS5 on SQLite, a tsvector column
    with a GIN index on PostgreSQL).

    On PostgreSQL the whole schema step runs in one transaction under an advisory lock, so instances
    starting at once on an empty database take turns. SQLite has no such lock: each process checks,
    then creates, so one can find a table or column another has just made, or the schema changed under
    its snapshot; that is harmless, so it simply looks again."""
    for attempt in range(attempts):
        try:
            _create_schema(engine)
            return
        except (OperationalError, ProgrammingError) as error:
            if attempt == attempts - 1 or not _already_made(error):
                raise
            time.sleep(0.05 * (attempt + 1))


def _already_made(error: DBAPIError) -> bool:
    message = str(error.orig).lower()
    # SQLite says "vtable constructor failed" when another process creates the FTS5 table under it, and
    # "database is locked" at once, without waiting, when another process wrote the schema after this
    # transaction first read it (WAL keeps it to its snapshot): in both cases a new attempt reads afresh.
    return any(sign in message for sign in ("already exists", "duplicate column", "vtable constructor failed", "database is locked"))


def _create_schema(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            postgres.lock_schema(connection)
        Base.metadata.create_all(connection)
        add_missing_columns(connection)
        if engine.dialect.name == "postgresql":
            postgres.create_search_schema(connection)
            vectors.create_vector_schema(connection)
        elif engine.dialect.name == "sqlite":
            fts_is_new = not inspect(connection).has_table("products_fts")
            for statement in _FTS_DDL:
                connection.execute(text(statement))
            if fts_is_new:
                connection.execute(text("INSERT INTO products_fts(products_fts) VALUES ('rebuild')"))


def add_missing_columns(connection: Connection) -> None:
    """Columns added to a table after a database was created: added in place (each has a server
    default, so existing rows get a value). Additive only; nothing is dropped or changed."""
    inspector = inspect(connection)
    for table in Base.metadata.sorted_tables:
        existing = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing:
                continue
            if column.server_default is None and not column.nullable:
                raise RuntimeError(f"cannot add {table.name}.{column.name} to an existing database: it has no default")
            column_type = column.type.compile(dialect=connection.dialect)
            default = f" DEFAULT '{column.server_default.arg}'" if column.server_default is not None else ""  # type: ignore[attr-defined]
            connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {column_type}{default}'))
        for index in table.indexes:  # an added column's index too
            index.create(connection, checkfirst=True)


def after_bulk_write(engine: Engine, tables: tuple[str, ...]) -> None:
    """On PostgreSQL, the indexes and planner statistics of `tables` brought up to date after a bulk write
    (an import, stored vectors) rather than whenever autovacuum comes by (db.postgres.refresh_after_bulk_write)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            postgres.refresh_after_bulk_write(connection, tables)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error."""
    with session_factory(engine).begin() as session:
        yield session
