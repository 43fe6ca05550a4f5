"""Making runs active for Classify (pairs kept together, the repo untouched), and training runs
started as child processes: recorded, visible, stoppable (SIGTERM marks the run stopped)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from core.inference.category_classifier import CategoryClassifier
from core.models.checkpoints import ModelFileError, load_checkpoint
from core.settings import get_settings
from core.training.jobs import list_jobs, start_training_job, stop_job, train_command
from db.runs import checkpoint_file
from db.session import make_engine, session_scope
from db.tables import TrainingRun
from services.active_models import ActivationError, activate_run, reset_active_models, runs_to_activate
from tests.helpers import use_home


def test_a_combined_run_brings_its_text_run(trained: dict) -> None:
    engine, combined, text = trained["engine"], trained["combined"], trained["text"]
    assert runs_to_activate(engine, combined.run_id) == {"combined": combined.checkpoint, "text": text.checkpoint}
    # A text run brings the newest finished combined run built on it (other tests may have trained one since).
    brought = runs_to_activate(engine, text.run_id)
    assert set(brought) == {"text", "combined"} and brought["text"] == text.checkpoint
    assert load_checkpoint(brought["combined"]).info["encoders"]["text_model_run"] == text.run_id
    assert runs_to_activate(engine, trained["image"].run_id) == {"image": trained["image"].checkpoint}
    with pytest.raises(ActivationError, match="no run"):
        runs_to_activate(engine, 9999)


def test_activation_installs_the_runs_beside_the_current_models(trained: dict, tmp_path: Path) -> None:
    engine = trained["engine"]
    shipped = get_settings().shipped_models_dir
    active = tmp_path / "active-models"
    manifest = activate_run(engine, trained["combined"].run_id, active_dir=active, current_dir=shipped, catalogue_fingerprint="fp")
    assert manifest["models"]["combined"]["run_id"] == trained["combined"].run_id
    assert manifest["models"]["text"]["run_id"] == trained["text"].run_id
    shipped_image_run = json.loads((shipped / "manifest.json").read_text())["models"]["image"]["run_id"]
    assert manifest["models"]["image"]["run_id"] == shipped_image_run  # kept from the set it started from
    assert not active.with_name("active-models.staging").exists()
    # The mixed set has different labels (3 generated categories against 13): the classifier refuses it clearly.
    with pytest.raises(ModelFileError, match="disagree on their categories"):
        CategoryClassifier(active)
    manifest = activate_run(
        engine,
        trained["image"].run_id,
        active_dir=active,
        current_dir=active,
        catalogue_fingerprint="fp",
        calibrate_on=trained["trainer"].catalogue,
        cache_dir=trained["home"] / "cache",
    )
    classifier = CategoryClassifier(active)
    assert len(classifier.labels) == 3 and manifest["models"]["image"]["run_id"] == trained["image"].run_id
    # Calibrated before it went live: every model of the set answers confident or with a short list.
    assert set(classifier.calibrations) == {"image", "text", "combined"}
    assert all("calibration" in entry for entry in manifest["models"].values())
    assert classifier.classify(text="pram and cot").prediction_set
    reset_active_models(active)
    assert not active.exists()


def test_settings_prefer_an_active_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MARKETPLACE_HOME", str(tmp_path))
    monkeypatch.delenv("MARKETPLACE_MODELS", raising=False)
    assert get_settings().models_dir == get_settings().shipped_models_dir
    (tmp_path / "active-models").mkdir()
    (tmp_path / "active-models" / "manifest.json").write_text("{}")
    assert get_settings().models_dir == tmp_path / "active-models"


def test_train_command_passes_only_set_options() -> None:
    command = train_command("text", {"epochs": 3, "lr": 0.001, "momentum": None, "finetune_layers": 2})
    assert command[1:] == ["-m", "core", "train", "--model", "text", "--quiet", "--epochs", "3", "--lr", "0.001", "--finetune-layers", "2"]
    with pytest.raises(ValueError):
        train_command("everything", {})


def test_a_run_started_from_the_app_trains_and_can_be_stopped(trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a copy of the trained catalogue's database: the other tests count that one's runs. The run asks for 100,000 epochs
    so that it is still training when stopped (with 400, one CI run finished before the stop arrived)."""
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(trained["home"] / "catalogue.db") as source, sqlite3.connect(home / "catalogue.db") as copy:
        source.backup(copy)
    use_home(monkeypatch, home, media_dir=trained["home"] / "media")
    jobs_dir = tmp_path / "jobs"
    engine = make_engine(f"sqlite:///{home / 'catalogue.db'}")
    with session_scope(engine) as session:
        known = set(session.scalars(select(TrainingRun.id)))
    job = start_training_job(
        "image", {"epochs": 100000, "lr": 0.01, "batch_size": 8, "val_fraction": 0.25, "test_fraction": 0.25}, jobs_dir=jobs_dir
    )
    assert [listed.pid for listed in list_jobs(jobs_dir)] == [job.pid]

    def new_run() -> tuple[int, str, str, int] | None:
        """(id, status, kind, epochs done) of the run the job created."""
        with session_scope(engine) as session:
            run = session.scalars(select(TrainingRun).where(TrainingRun.id.not_in(known))).first()
            return None if run is None else (run.id, run.status, run.model_kind, len(run.epochs))

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not ((run := new_run()) and run[3] > 0):
        assert job.running, job.log_tail()
        time.sleep(1)
    assert run is not None and run[1:3] == ("running", "image")
    assert stop_job(job)
    deadline = time.monotonic() + 60
    while job.running and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not job.running and not stop_job(job)
    with session_scope(engine) as session:
        stopped = session.get_one(TrainingRun, run[0])
        assert stopped.status == "stopped" and stopped.best_epoch is not None
        assert stopped.checkpoint_path == f"runs/run-{run[0]}-image.pt"  # relative to the home: another machine may mount it elsewhere
        assert checkpoint_file(stopped.checkpoint_path, root=home).is_file()
