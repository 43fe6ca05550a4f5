"""`python -m core migrate`: a SQLite catalogue with its label history, review queue, training runs and
API keys copied into PostgreSQL, every count checked; the copy then works as a catalogue of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from benchmarks.common import PostgresServer
from cli.main import main
from core.enums import RunStatus
from core.training.records import EpochResult
from db.importer import import_catalogue
from db.keyword_search import keyword_search
from db.runs import DatabaseRunRecorder
from db.session import make_engine, session_scope
from db.tables import Base, LabelHistory, Product
from services.api_keys import create_api_key, key_holder
from services.review import fix_label
from services.review_queue import QueueEntry, add_to_queue
from tests.helpers import generated_catalogue


def _counts(engine: Engine) -> dict[str, int]:
    with session_scope(engine) as session:
        return {table.name: session.scalar(select(func.count()).select_from(table)) or 0 for table in Base.metadata.sorted_tables}


def _version(engine: Engine, product_id: str) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(Product.label_version).where(Product.id == product_id)) or 0)


@pytest.fixture
def sqlite_catalogue(tmp_path: Path) -> tuple[str, Engine, str]:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    engine = make_engine(url)
    import_catalogue(generated_catalogue(tmp_path / "source", per_class=3), engine=engine, media_dir=tmp_path / "images")
    add_to_queue(
        engine, [QueueEntry("appl0", 0.1, "Appliances", "Baby & Kids Stuff", [("Baby & Kids Stuff", 0.8)], True, "cross-validation")]
    )
    fix_label(engine, "appl1", new_category="Baby & Kids Stuff", changed_by="ann", seen_version=1)
    recorder = DatabaseRunRecorder(engine, root=tmp_path)
    run_id = recorder.create_run(
        model_kind="text",
        encoder_ids={"text": "minilm"},
        hyperparameters={"lr": 0.01},
        split_seed=1,
        labels=["a", "b"],
        data_fingerprint="f",
        split={"appl0": "train"},
    )
    recorder.record_epoch(
        run_id, EpochResult(epoch=1, train_loss=1.0, train_accuracy=0.5, val_loss=1.1, val_accuracy=0.4, learning_rate=0.01, seconds=1.0)
    )
    recorder.finish_run(run_id, status=RunStatus.FINISHED)
    key = create_api_key(engine, "alice")
    return url, engine, key


def test_a_sqlite_catalogue_moves_to_postgresql(
    sqlite_catalogue: tuple[str, Engine, str], postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    source_url, source, key = sqlite_catalogue
    target_url = postgres_server.new_database()
    assert main(["migrate", "--from", source_url, "--to", target_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = _counts(source)
    assert report["rows"] == expected and expected["label_history"] == 1 and expected["run_epochs"] == 1
    target = make_engine(target_url)
    assert _counts(target) == expected

    # The copy is a working catalogue: search, keys, and new rows after the copied ids.
    with session_scope(target) as session:
        assert keyword_search(session, "fridge").hits
    assert key_holder(target, key) == "alice"
    fix_label(target, "appl1", new_category="Appliances", changed_by="bob", seen_version=_version(target, "appl1"))
    with session_scope(target) as session:
        chain = [
            (row.id, row.changed_by)
            for row in session.scalars(select(LabelHistory).where(LabelHistory.product_id == "appl1").order_by(LabelHistory.id))
        ]
    assert [who for _, who in chain] == ["ann", "bob"] and chain[0][0] < chain[1][0]

    assert main(["migrate", "--from", source_url, "--to", target_url]) == 1  # never into a catalogue that holds one
    assert "already holds a catalogue" in capsys.readouterr().err
    assert _counts(target) == {**expected, "label_history": expected["label_history"] + 1}
