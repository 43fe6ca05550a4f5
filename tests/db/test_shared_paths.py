"""Instances sharing a catalogue share its files through a folder each may mount elsewhere: the
database stores photo and checkpoint paths relative to the catalogue home, never one machine's absolute path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from core.enums import RunStatus
from db.importer import import_catalogue
from db.runs import DatabaseRunRecorder
from db.session import make_engine, session_scope
from db.tables import Image, TrainingRun
from services.active_models import runs_to_activate
from tests.helpers import image_row, photo, product_row, write_catalogue


def test_a_checkpoint_is_found_where_another_machine_mounts_the_home(
    tmp_path: Path, catalogue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(catalogue_url)
    first_home = tmp_path / "machine-a" / "home"
    checkpoint = first_home / "runs" / "image-1" / "best.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    recorder = DatabaseRunRecorder(engine, root=first_home)
    run_id = recorder.create_run(
        model_kind="image", encoder_ids={}, hyperparameters={}, split_seed=0, labels=["a"], data_fingerprint="f", split={}
    )
    recorder.record_best(run_id, epoch=1, val_accuracy=0.5, checkpoint_path=str(checkpoint))
    recorder.finish_run(run_id, status=RunStatus.FINISHED)
    with session_scope(engine) as session:
        assert session.get_one(TrainingRun, run_id).checkpoint_path == "runs/image-1/best.pt"

    second_home = tmp_path / "machine-b" / "mnt" / "catalogue"
    shutil.copytree(first_home, second_home)
    shutil.rmtree(first_home)
    monkeypatch.setenv("MARKETPLACE_HOME", str(second_home))
    assert runs_to_activate(engine, run_id) == {"image": second_home / "runs" / "image-1" / "best.pt"}


def test_photo_paths_are_relative_to_the_media_folder(tmp_path: Path, catalogue_url: str) -> None:
    engine = make_engine(catalogue_url)
    source = write_catalogue(tmp_path / "source", [product_row("a")], [image_row("ia", "a")], photos={"ia": photo()})
    import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    with session_scope(engine) as session:
        (stored,) = session.scalars(select(Image.file_path))
    assert not Path(stored).is_absolute() and (tmp_path / "media" / stored).is_file()
