"""Recording training runs: the run, its split, one row per epoch, and the best model's predictions."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, select

from db.models import RunEpoch, RunPrediction, RunSplit, TrainingRun, utc_now
from db.session import session_scope


def create_run(engine: Engine, *, model_kind: str, encoder_ids: dict, hyperparameters: dict, split_seed: int,
               labels: list[str], data_fingerprint: str, split: dict[str, str]) -> int:
    with session_scope(engine) as session:
        run = TrainingRun(model_kind=model_kind, encoder_ids=encoder_ids, hyperparameters=hyperparameters,
                          split_seed=split_seed, labels=labels, data_fingerprint=data_fingerprint, status="running")
        session.add(run)
        session.flush()
        session.add_all(RunSplit(run_id=run.id, product_id=product_id, part=part) for product_id, part in split.items())
        return run.id


def record_epoch(engine: Engine, run_id: int, *, epoch: int, train_loss: float, train_accuracy: float, val_loss: float,
                 val_accuracy: float, learning_rate: float, seconds: float) -> None:
    """Committed at once, so a page watching the run sees each epoch as it ends."""
    with session_scope(engine) as session:
        session.add(RunEpoch(run_id=run_id, epoch=epoch, train_loss=train_loss, train_accuracy=train_accuracy,
                             val_loss=val_loss, val_accuracy=val_accuracy, learning_rate=learning_rate, seconds=seconds))


def record_best(engine: Engine, run_id: int, *, epoch: int, val_accuracy: float, checkpoint_path: str) -> None:
    with session_scope(engine) as session:
        run = session.get_one(TrainingRun, run_id)
        run.best_epoch, run.best_val_accuracy, run.checkpoint_path = epoch, val_accuracy, checkpoint_path


def finish_run(engine: Engine, run_id: int, *, status: str, test_metrics: dict | None = None, note: str = "",
               predictions: Iterable[RunPrediction] = ()) -> None:
    with session_scope(engine) as session:
        run = session.get_one(TrainingRun, run_id)
        run.status, run.finished_at, run.note = status, utc_now(), note
        if test_metrics is not None:
            run.test_metrics = test_metrics
        session.add_all(predictions)


def run_split(engine: Engine, run_id: int) -> dict[str, str]:
    with session_scope(engine) as session:
        return {product_id: part for product_id, part in session.execute(select(RunSplit.product_id, RunSplit.part).where(RunSplit.run_id == run_id))}


def latest_run(engine: Engine, *, model_kind: str, status: str = "finished") -> TrainingRun | None:
    with session_scope(engine) as session:
        return session.scalar(select(TrainingRun).where(TrainingRun.model_kind == model_kind, TrainingRun.status == status)
                              .order_by(TrainingRun.id.desc()).limit(1))
