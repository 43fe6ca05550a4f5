"""Which models the app and CLI classify with: the shipped set under models/, or a set made active
from finished training runs (under $MARKETPLACE_HOME/active-models, never touching the repo).

The combined model reads the text model's features, so the two always travel together: making a
combined run active brings the text run it was built on; a text run needs a combined run built on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.data.catalogue import Catalogue
from core.enums import ModelKind, RunStatus
from core.models.manifest import MANIFEST, ModelFileError, read_manifest
from core.models.release import ship_models
from core.settings import get_settings
from db.runs import checkpoint_file
from db.session import session_scope
from db.tables import TrainingRun

MODEL_FILES = ("image.pt", "text.pt", "combined.pt", MANIFEST)


class ActivationError(ValueError):
    """The run cannot be made active; the message says why and what would allow it."""


def _checkpoint(run: TrainingRun) -> Path:
    return checkpoint_file(run.checkpoint_path or "", root=get_settings().data_dir)


def _finished_run(session: Session, run_id: int) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise ActivationError(f"there is no run {run_id}")
    if run.status != RunStatus.FINISHED or not run.checkpoint_path or not _checkpoint(run).is_file():
        raise ActivationError(f"run {run_id} is not a finished run with its checkpoint on this machine")
    return run


def runs_to_activate(engine: Engine, run_id: int) -> dict[str, Path]:
    """The checkpoints that making `run_id` active installs, by model kind."""
    with session_scope(engine) as session:
        run = _finished_run(session, run_id)
        checkpoints = {run.model_kind: _checkpoint(run)}
        if run.model_kind == "combined":
            text_run = run.encoder_ids.get("text_model_run")
            if text_run is None:
                raise ActivationError(f"run {run_id} does not record the text run it was built on")
            checkpoints["text"] = _checkpoint(_finished_run(session, int(text_run)))
        elif run.model_kind == "text":
            combined = [
                candidate
                for candidate in session.scalars(
                    select(TrainingRun)
                    .where(TrainingRun.model_kind == ModelKind.COMBINED, TrainingRun.status == RunStatus.FINISHED)
                    .order_by(TrainingRun.id.desc())
                )
                if candidate.encoder_ids.get("text_model_run") == run_id and candidate.checkpoint_path and _checkpoint(candidate).is_file()
            ]
            if not combined:
                raise ActivationError(
                    f"text run {run_id} has no finished combined run built on it; train one first "
                    f"(python -m core train --model combined --text-run {run_id}), then make that one active"
                )
            checkpoints["combined"] = _checkpoint(combined[0])
        return checkpoints


def activate_run(
    engine: Engine,
    run_id: int,
    *,
    active_dir: Path,
    current_dir: Path,
    catalogue_fingerprint: str,
    calibrate_on: Catalogue | None = None,
    cache_dir: Path | None = None,
) -> dict:
    """Install the run (and its partner, see above) into `active_dir`, starting from the models in
    `current_dir` for the kinds it does not replace. With `calibrate_on` (the catalogue the runs were
    trained on), the set is calibrated on its validation products before it goes live, so its answers say
    whether they are confident (core.evaluation.calibrate). Returns the new manifest."""
    checkpoints = runs_to_activate(engine, run_id)
    staging = active_dir.with_name(active_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in MODEL_FILES:
        if (current_dir / name).is_file():
            shutil.copy2(current_dir / name, staging / name)
    try:
        manifest = ship_models(checkpoints, staging, catalogue_fingerprint=catalogue_fingerprint)
    except ModelFileError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ActivationError(str(error)) from error
    if calibrate_on is not None:
        manifest = _calibrated(staging, calibrate_on, cache_dir=cache_dir or get_settings().cache_dir, manifest=manifest)
    # Swap whole folders: a reader sees the old set or the new one, never a mix.
    retired = active_dir.with_name(active_dir.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if active_dir.exists():
        active_dir.rename(retired)
    staging.rename(active_dir)
    shutil.rmtree(retired, ignore_errors=True)
    return manifest


def _calibrated(models_dir: Path, catalogue: Catalogue, *, cache_dir: Path, manifest: dict) -> dict:
    """The set calibrated in place, and its manifest; a set that cannot be loaded together (its models
    disagree on their categories) stays as it is: the classifier refuses it with that message."""
    from core.evaluation.calibrate import calibrate_models

    try:
        calibrate_models(models_dir, catalogue, cache_dir=cache_dir)
    except (ModelFileError, ValueError):
        return manifest
    return read_manifest(models_dir)


def reset_active_models(active_dir: Path) -> None:
    """Back to the shipped models."""
    shutil.rmtree(active_dir, ignore_errors=True)
