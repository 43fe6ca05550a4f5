"""What a training run reports as it goes, and to whom, and why one cannot start: plain records, no torch
(the database layer stores them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.enums import RunStatus


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    seconds: float


@dataclass(frozen=True)
class ItemPrediction:
    """The best model's answer for one item (a product, or a photo for the image model)."""

    item_id: str
    product_id: str
    part: str  # train | validation | test
    true_label: int
    predicted_label: int
    probabilities: list[float]


class RunRecorder(Protocol):
    """Where a run is recorded as it goes (db.runs.DatabaseRunRecorder keeps it in the catalogue's database)."""

    def create_run(
        self,
        *,
        model_kind: str,
        encoder_ids: dict[str, Any],
        hyperparameters: dict[str, Any],
        split_seed: int,
        labels: list[str],
        data_fingerprint: str,
        split: dict[str, str],
    ) -> int: ...

    def record_epoch(self, run_id: int, result: EpochResult) -> None: ...

    def record_best(self, run_id: int, *, epoch: int, val_accuracy: float, checkpoint_path: str) -> None: ...

    def finish_run(
        self,
        run_id: int,
        *,
        status: RunStatus,
        test_metrics: dict[str, Any] | None = None,
        note: str = "",
        predictions: Sequence[ItemPrediction] = (),
    ) -> None: ...


class TrainingError(RuntimeError):
    """A run that cannot start: too little data, a missing prerequisite; the message says which."""
