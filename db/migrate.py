"""Copy a whole catalogue from one database to another (SQLite to PostgreSQL when a team outgrows one
file): products, photos, categories, label history, the review queue, training runs with their epochs,
splits and predictions, and API keys, ids kept, in one transaction on the target, every table's row
count checked before it commits. Embeddings are not copied: they are recomputed from the cache (or
copied through it) by the next embedding job."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, Integer, Table, func, select, text

from db.session import make_engine, safe_database_url
from db.tables import Base, Product

COPY_BATCH = 2_000


class MigrationError(RuntimeError):
    """The copy cannot be made or did not check out; nothing was written (the message says why)."""


@dataclass
class MigrationReport:
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied (equal on both sides)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "rows": self.rows, "seconds": round(self.seconds, 2)}


def _utc(row: dict[str, Any]) -> dict[str, Any]:
    """Times as written (UTC); SQLite hands them back without their zone, PostgreSQL needs it."""
    return {
        key: value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) and value.tzinfo is None else value
        for key, value in row.items()
    }


def _copy_table(source: Connection, target: Connection, table: Table) -> int:
    copied = 0
    result = source.execution_options(yield_per=COPY_BATCH).execute(select(table).order_by(*table.primary_key.columns))
    for rows in result.mappings().partitions(COPY_BATCH):
        target.execute(table.insert(), [_utc(dict(row)) for row in rows])
        copied += len(rows)
    return copied


def _reset_sequences(target: Connection) -> None:
    """PostgreSQL's id sequences start after the copied ids (SQLite needs nothing: it takes max(id) + 1)."""
    if target.dialect.name != "postgresql":
        return
    for table in Base.metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        if len(keys) == 1 and isinstance(keys[0].type, Integer) and keys[0].autoincrement in (True, "auto"):
            sequence = target.scalar(text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": table.name, "column": keys[0].name})
            if sequence:
                target.execute(
                    text(f"SELECT setval(:sequence, COALESCE((SELECT max({keys[0].name}) FROM {table.name}), 0) + 1, false)"),
                    {"sequence": sequence},
                )


def migrate_catalogue(source_url: str, target_url: str) -> MigrationReport:
    """Copy the catalogue at `source_url` into the empty catalogue at `target_url` (its schema is created)."""
    started = time.perf_counter()
    if source_url == target_url:
        raise MigrationError("the source and the target are the same database")
    source: Engine = make_engine(source_url)  # an older catalogue gets its missing columns first (additive only)
    target: Engine = make_engine(target_url)
    report = MigrationReport(safe_database_url(source_url), safe_database_url(target_url))
    try:
        with source.connect() as reading, target.begin() as writing:
            if writing.scalar(select(func.count()).select_from(Product)):
                raise MigrationError(f"{report.target} already holds a catalogue: migrate into an empty database")
            for table in Base.metadata.sorted_tables:  # parents before children
                report.rows[table.name] = _copy_table(reading, writing, table)
            for table in Base.metadata.sorted_tables:
                found = writing.scalar(select(func.count()).select_from(table)) or 0
                expected = reading.scalar(select(func.count()).select_from(table)) or 0
                if found != expected or found != report.rows[table.name]:
                    raise MigrationError(f"{table.name}: {found:,} rows in the target, {expected:,} in the source; nothing was written")
            _reset_sequences(writing)
    finally:
        source.dispose()
        target.dispose()
    report.seconds = time.perf_counter() - started
    return report
