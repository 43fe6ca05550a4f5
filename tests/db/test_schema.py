"""A database created before a column existed gets it on the next connection, with its default."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError

from db import session
from db.importer import import_catalogue
from db.session import make_engine
from tests.helpers import product_row, write_catalogue


def test_columns_added_later_appear_in_an_old_database(tmp_path: Path, catalogue_url: str) -> None:
    url = catalogue_url
    engine = make_engine(url)
    import_catalogue(write_catalogue(tmp_path / "source", [product_row("a")], []), engine=engine, media_dir=tmp_path / "media")
    with engine.begin() as connection:  # make it look like a database from before these columns
        connection.execute(text("DROP INDEX ix_products_status"))
        connection.execute(text("ALTER TABLE products DROP COLUMN status"))
        connection.execute(text("ALTER TABLE label_history DROP COLUMN action"))
    engine.dispose()
    assert "status" not in {column["name"] for column in inspect(make_engine(url, create_schema=False)).get_columns("products")}

    upgraded = make_engine(url)
    assert "status" in {column["name"] for column in inspect(upgraded).get_columns("products")}
    assert "action" in {column["name"] for column in inspect(upgraded).get_columns("label_history")}
    assert "ix_products_status" in {index["name"] for index in inspect(upgraded).get_indexes("products")}
    with upgraded.connect() as connection:
        assert connection.execute(text("SELECT status FROM products WHERE id = 'a'")).scalar_one() == "active"


def test_a_schema_step_refused_as_locked_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite answers "database is locked" at once, without waiting, when another instance changed the
    # schema after this one's transaction first read it; the step must look again, not fail the start.
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    engine = make_engine(url, create_schema=False)
    real_step, calls = session._create_schema, []

    def refused_once(engine_: Engine) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("CREATE TABLE products", {}, sqlite3.OperationalError("database is locked"))
        real_step(engine_)

    monkeypatch.setattr(session, "_create_schema", refused_once)
    session.init_schema(engine)
    assert len(calls) == 2 and "products" in inspect(engine).get_table_names()

    def always_broken(engine_: Engine) -> None:
        raise OperationalError("CREATE TABLE products", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(session, "_create_schema", always_broken)
    with pytest.raises(OperationalError):
        session.init_schema(engine)
