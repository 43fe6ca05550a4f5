"""Crashes on purpose: an import and a training run killed part-way with SIGKILL (no handler runs).
The catalogue is left as before or as after, never half-imported, and the rerun completes it with
the exact counts; a killed run is marked died, its checkpoint (if any) is whole, and the models in
use stay loadable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.models.checkpoints import load_checkpoint
from core.settings import PROJECT_ROOT, home_environment
from db.runs import checkpoint_file
from db.session import make_engine, session_scope
from db.tables import RunEpoch, TrainingRun
from tests.helpers import generated_catalogue, generated_photo, image_row, product_row, row_counts, use_home, write_catalogue


def _large_catalogue(folder: Path, products: int) -> Path:
    rng = random.Random(3)
    rows, images, photos = [], [], {}
    for index in range(products):
        rows.append(product_row(f"p{index}", product_description=f"item {index} " * 20))
        for position in range(2):
            image_id = f"p{index}i{position}"
            images.append(image_row(image_id, f"p{index}"))
            photos[image_id] = generated_photo((rng.randint(0, 255), 90, 90), "ellipse", rng).resize((600, 600))
    return write_catalogue(folder, rows, images, photos=photos)


def _counts(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    products, photos, _ = row_counts(engine)
    return products, photos


def _environment(home: Path) -> dict[str, str]:
    environment = {**os.environ, **home_environment(home)}
    environment.pop("MARKETPLACE_MODELS", None)
    return environment


def _import(source: Path, environment: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "core", "import", str(source), "--quiet"],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_an_import_killed_part_way_leaves_before_or_after_and_a_rerun_completes_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    environment = _environment(home)
    full = _large_catalogue(tmp_path / "full", 300)
    first_half = write_catalogue(
        tmp_path / "half", [product_row(f"p{index}", product_description=f"item {index} " * 20) for index in range(150)], []
    )
    assert _import(first_half, environment).wait(timeout=300) == 0
    engine = make_engine(environment["DATABASE_URL"])
    before = _counts(engine)
    assert before == (150, 0)

    started = time.monotonic()
    assert _import(full, environment).wait(timeout=300) == 0  # how long a whole import takes here, on a scratch copy
    whole_seconds = time.monotonic() - started
    after = _counts(engine)
    assert after == (300, 600)

    # The same import from the same "before" (a home of its own each time), killed at spread-out moments of its run.
    observed = set()
    for fraction in (0.15, 0.35, 0.55, 0.75, 0.9, 0.97):
        kill_home = tmp_path / f"home-{fraction}"
        kill_environment = _environment(kill_home)
        assert _import(first_half, kill_environment).wait(timeout=300) == 0
        process = _import(full, kill_environment)
        time.sleep(whole_seconds * fraction)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        kill_engine = make_engine(kill_environment["DATABASE_URL"])
        state = _counts(kill_engine)
        assert state in (before, after), (fraction, state)
        observed.add(state)
        rerun = _import(full, kill_environment)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err
        assert _counts(kill_engine) == after
        assert not list((kill_home / "images").rglob("*.tmp"))  # partial photo files of the killed run removed
        kill_engine.dispose()
    assert before in observed  # at least one kill landed part-way through the import


@pytest.mark.slow
def test_a_training_run_killed_part_way_is_marked_died_and_leaves_whole_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.inference.category_classifier import CategoryClassifier
    from core.settings import get_settings
    from db.runs import runs_frame

    home = tmp_path / "home"
    environment = _environment(home)
    source = generated_catalogue(tmp_path / "source", per_class=8)
    assert _import(source, environment).wait(timeout=300) == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "core", "train", "--model", "image", "--epochs", "100000", "--quiet"],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    engine = make_engine(environment["DATABASE_URL"])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        with session_scope(engine) as session:
            if session.scalar(select(func.count()).select_from(RunEpoch)) >= 3:
                break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)

    frame = runs_frame(engine)
    assert frame["status"].tolist() == ["died"] and "killed" in frame["note"][0]
    with session_scope(engine) as session:
        run = session.scalars(select(TrainingRun)).one()
        checkpoint = checkpoint_file(run.checkpoint_path, root=home) if run.checkpoint_path else None
    if checkpoint is not None:
        assert load_checkpoint(checkpoint).kind == "image"  # written atomically: whole or absent
    for path in (home / "runs").rglob("*.pt"):
        load_checkpoint(path)
    # Only a finished run can be made active, and the models in use are untouched and load.
    from services.active_models import ActivationError, activate_run

    with pytest.raises(ActivationError):
        activate_run(engine, run.id, active_dir=home / "active-models", current_dir=PROJECT_ROOT / "models", catalogue_fingerprint="x")
    use_home(monkeypatch, home)
    assert get_settings().models_dir == PROJECT_ROOT / "models"
    assert CategoryClassifier(PROJECT_ROOT / "models").labels
