"""Recording training runs: the run, its split, one row per epoch, and the best model's predictions."""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from core.data.splits import TEST
from core.enums import FIX_SOURCES, RunStatus
from core.evaluation.metrics import PredictionSet
from core.runtime.processes import process_alive, this_host
from core.training.records import EpochResult, ItemPrediction
from db.session import session_scope
from db.tables import LabelHistory, RunEpoch, RunPrediction, RunSplit, TrainingRun, utc_now


def create_run(
    engine: Engine,
    *,
    model_kind: str,
    encoder_ids: dict,
    hyperparameters: dict,
    split_seed: int,
    labels: list[str],
    data_fingerprint: str,
    split: dict[str, str],
) -> int:
    with session_scope(engine) as session:
        run = TrainingRun(
            model_kind=model_kind,
            encoder_ids=encoder_ids,
            hyperparameters=hyperparameters,
            split_seed=split_seed,
            labels=labels,
            data_fingerprint=data_fingerprint,
            status=RunStatus.RUNNING,
            pid=os.getpid(),
            host=this_host(),
        )
        session.add(run)
        session.flush()
        session.add_all(RunSplit(run_id=run.id, product_id=product_id, part=part) for product_id, part in split.items())
        return run.id


def record_epoch(
    engine: Engine,
    run_id: int,
    *,
    epoch: int,
    train_loss: float,
    train_accuracy: float,
    val_loss: float,
    val_accuracy: float,
    learning_rate: float,
    seconds: float,
) -> None:
    """Committed at once, so a page watching the run sees each epoch as it ends."""
    with session_scope(engine) as session:
        session.add(
            RunEpoch(
                run_id=run_id,
                epoch=epoch,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                learning_rate=learning_rate,
                seconds=seconds,
            )
        )


def stored_path(path: str | Path, *, root: Path | None) -> str:
    """`path` as the catalogue stores it: relative to `root` (the catalogue home, a folder instances
    sharing the catalogue share too) when it lies below it, else as given."""
    if root is not None:
        try:
            return Path(path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def checkpoint_file(stored: str, *, root: Path) -> Path:
    """A stored checkpoint path on this machine: relative paths are below `root`, absolute ones as they are."""
    return root / stored  # an absolute `stored` replaces root


def record_best(engine: Engine, run_id: int, *, epoch: int, val_accuracy: float, checkpoint_path: str, root: Path | None = None) -> None:
    with session_scope(engine) as session:
        run = session.get_one(TrainingRun, run_id)
        run.best_epoch, run.best_val_accuracy = epoch, val_accuracy
        run.checkpoint_path = stored_path(checkpoint_path, root=root)


def finish_run(
    engine: Engine,
    run_id: int,
    *,
    status: str,
    test_metrics: dict | None = None,
    note: str = "",
    predictions: Iterable[ItemPrediction] = (),
) -> None:
    with session_scope(engine) as session:
        run = session.get_one(TrainingRun, run_id)
        run.status, run.finished_at, run.note = str(status), utc_now(), note
        if test_metrics is not None:
            run.test_metrics = test_metrics
        session.add_all(RunPrediction(run_id=run_id, **asdict(prediction)) for prediction in predictions)


@dataclass(frozen=True)
class DatabaseRunRecorder:
    """core.training.records.RunRecorder over this module: each step committed at once, so a page
    watching the run sees every epoch as it ends. Checkpoints below `root` are stored relative to it."""

    engine: Engine
    root: Path | None = None

    def create_run(self, **run: Any) -> int:
        return create_run(self.engine, **run)

    def record_epoch(self, run_id: int, result: EpochResult) -> None:
        record_epoch(self.engine, run_id, **asdict(result))

    def record_best(self, run_id: int, *, epoch: int, val_accuracy: float, checkpoint_path: str) -> None:
        record_best(self.engine, run_id, epoch=epoch, val_accuracy=val_accuracy, checkpoint_path=checkpoint_path, root=self.root)

    def finish_run(
        self,
        run_id: int,
        *,
        status: RunStatus,
        test_metrics: dict[str, Any] | None = None,
        note: str = "",
        predictions: Sequence[ItemPrediction] = (),
    ) -> None:
        finish_run(self.engine, run_id, status=status, test_metrics=test_metrics, note=note, predictions=predictions)


def mark_dead_runs(engine: Engine) -> int:
    """Runs still `running` whose process on this machine is gone (killed without a chance to record
    it) become `died`; their checkpoint, written atomically, still holds the best epoch reached."""
    with session_scope(engine) as session:
        dead = [
            run
            for run in session.scalars(select(TrainingRun).where(TrainingRun.status == RunStatus.RUNNING))
            if run.pid is not None and run.host == this_host() and not process_alive(run.pid)
        ]
        for run in dead:
            run.status, run.finished_at = RunStatus.DIED, utc_now()
            run.note = "the training process ended without recording it (killed)" + (
                "; the checkpoint holds the best epoch reached" if run.checkpoint_path else ""
            )
        return len(dead)


def run_split(engine: Engine, run_id: int) -> dict[str, str]:
    with session_scope(engine) as session:
        return {
            product_id: part
            for product_id, part in session.execute(select(RunSplit.product_id, RunSplit.part).where(RunSplit.run_id == run_id))
        }


def latest_run(engine: Engine, *, model_kind: str, status: str = RunStatus.FINISHED) -> TrainingRun | None:
    with session_scope(engine) as session:
        return session.scalar(
            select(TrainingRun)
            .where(TrainingRun.model_kind == model_kind, TrainingRun.status == status)
            .order_by(TrainingRun.id.desc())
            .limit(1)
        )


RUN_COLUMNS = [
    "run",
    "model",
    "status",
    "started",
    "finished",
    "epochs",
    "best epoch",
    "best val accuracy",
    "test accuracy",
    "test macro-F1",
    "review fixes before",
    "hyper-parameters",
    "note",
]
SHOWN_HYPERPARAMETERS = (
    "epochs",
    "optimizer",
    "lr",
    "batch_size",
    "momentum",
    "step_size",
    "gamma",
    "dropout",
    "weight_decay",
    "finetune_layers",
    "finetune_blocks",
    "text_folds",
    "backbone",
    "seed",
)


def runs_frame(engine: Engine) -> pd.DataFrame:
    """Every run, newest first, as the Training page lists them (killed runs marked first)."""
    mark_dead_runs(engine)
    with session_scope(engine) as session:
        epoch_counts = dict(session.execute(select(RunEpoch.run_id, func.count()).group_by(RunEpoch.run_id)).all())
        # Labels fixed by people (review or by hand) before a run started: compare runs before and after the fixes.
        fixes = sorted(
            _naive_utc(moment)
            for moment in session.scalars(
                select(LabelHistory.changed_at).where(LabelHistory.source.in_(FIX_SOURCES), LabelHistory.action == "relabel")
            )
        )
        rows = []
        for run in session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc())):
            metrics = run.test_metrics or {}
            hyper = run.hyperparameters or {}
            rows.append(
                [
                    run.id,
                    run.model_kind,
                    run.status,
                    run.started_at,
                    run.finished_at,
                    epoch_counts.get(run.id, 0),
                    run.best_epoch,
                    run.best_val_accuracy,
                    metrics.get("accuracy"),
                    metrics.get("macro_f1"),
                    bisect.bisect_left(fixes, _naive_utc(run.started_at)),
                    ", ".join(f"{key}={hyper[key]}" for key in SHOWN_HYPERPARAMETERS if key in hyper and hyper[key] not in (None, 0, "")),
                    run.note,
                ]
            )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _naive_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone (they were stored in UTC); PostgreSQL with it."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def epochs_frame(engine: Engine, run_ids: Iterable[int]) -> pd.DataFrame:
    """Per-epoch losses and accuracies of the given runs."""
    columns = ["run_id", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]
    with session_scope(engine) as session:
        rows = session.execute(
            select(*(getattr(RunEpoch, column) for column in columns))
            .where(RunEpoch.run_id.in_(list(run_ids)))
            .order_by(RunEpoch.run_id, RunEpoch.epoch)
        ).all()
    return pd.DataFrame(rows, columns=columns)


def run_prediction_set(engine: Engine, run_id: int, *, part: str = TEST) -> PredictionSet:
    """A finished run's stored predictions on its test (or validation) items."""
    with session_scope(engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            raise ValueError(f"there is no run {run_id}")
        rows = session.execute(
            select(RunPrediction.item_id, RunPrediction.product_id, RunPrediction.true_label, RunPrediction.probabilities)
            .where(RunPrediction.run_id == run_id, RunPrediction.part == part)
            .order_by(RunPrediction.item_id)
        ).all()
        labels, kind = list(run.labels), run.model_kind
    probabilities = np.array([row.probabilities for row in rows], dtype=float).reshape(len(rows), len(labels))
    return PredictionSet.from_arrays(
        f"run {run_id} ({kind})",
        kind,
        labels,
        item_ids=[row.item_id for row in rows],
        product_ids=[row.product_id for row in rows],
        y_true=[row.true_label for row in rows],
        probabilities=probabilities,
        part=part,
    )
