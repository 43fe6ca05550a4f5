"""One training run from start to finish, whatever the model: recorded when it starts, every epoch
reported, the best epoch kept as a checkpoint, the best model's validation and test predictions
recorded at the end; a stopped or failed run is marked so, with the reason."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from core.data.splits import TEST, TRAIN
from core.encoders.backbones import get_backbone
from core.enums import RunStatus
from core.evaluation.metrics import classification_metrics
from core.models.checkpoints import save_checkpoint
from core.training.hyperparameters import HyperParameters
from core.training.loop import Batch, fit, index_batches, make_optimizer, make_scheduler, predict_probabilities, set_seed
from core.training.records import EpochResult, ItemPrediction, RunRecorder

# (item ids, product ids, parts, true labels, probabilities) of every non-training item
Predictions = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class RunResult:
    run_id: int
    kind: str
    checkpoint: Path
    best_epoch: int
    best_val_accuracy: float
    test_metrics: dict[str, Any]
    history: list[EpochResult] = field(default_factory=list)


@dataclass
class RunSpec:
    """What a run trains and on what: built by core.training.trainer.Trainer for each kind of model."""

    kind: str
    hyper: HyperParameters
    encoder_ids: dict[str, Any]
    split: dict[str, str]
    config: dict[str, Any]  # rebuilds the model from its checkpoint
    model: nn.Module
    parameter_groups: list[dict[str, Any]]
    train_batches: Callable[[np.random.Generator], Iterator[Batch]]
    val_batches: Callable[[], Iterator[Batch]]
    predict: Callable[[nn.Module], Predictions]
    bf16: bool = False
    extra_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Where runs are recorded and stored, and the catalogue they train on."""

    recorder: RunRecorder
    runs_dir: Path
    labels: list[str]
    fingerprint: str
    epoch_progress: Callable[[str, EpochResult], None] | None = None


def held_out_predictor(
    make: Callable[[np.ndarray], Batch],
    parts: np.ndarray,
    y: np.ndarray,
    item_ids: np.ndarray,
    product_ids: np.ndarray,
    *,
    batch_size: int,
    bf16: bool = False,
) -> Callable[[nn.Module], Predictions]:
    """A run's `predict`: the trained model's probabilities for every item outside the training part
    (validation and test), with their ids, parts and true labels, all arrays in item order."""
    rows = np.where(parts != TRAIN)[0]

    def predict(model: nn.Module) -> Predictions:
        probabilities = predict_probabilities(model, index_batches(rows, batch_size, make), bf16=bf16)
        return item_ids[rows], product_ids[rows], parts[rows], y[rows], probabilities

    return predict


def execute_run(spec: RunSpec, context: RunContext) -> RunResult:
    """Train `spec.model`, keeping the best epoch by validation accuracy; Ctrl-C marks the run stopped."""
    set_seed(spec.hyper.seed)
    recorder, hyper = context.recorder, spec.hyper
    run_id = recorder.create_run(
        model_kind=spec.kind,
        encoder_ids=spec.encoder_ids,
        hyperparameters=asdict(hyper),
        split_seed=hyper.seed,
        labels=context.labels,
        data_fingerprint=context.fingerprint,
        split=spec.split,
    )
    checkpoint = context.runs_dir / f"run-{run_id}-{spec.kind}.pt"
    info = {"encoders": spec.encoder_ids, "hyperparameters": asdict(hyper), "data_fingerprint": context.fingerprint, "run_id": run_id}
    info |= spec.extra_info
    if "image_backbone" in spec.encoder_ids:
        info["preprocessing"] = get_backbone(spec.encoder_ids["image_backbone"]).metadata

    def save(model: nn.Module, **details: Any) -> None:
        save_checkpoint(checkpoint, kind=spec.kind, model=model, labels=context.labels, config=spec.config, info={**info, **details})

    history: list[EpochResult] = []

    def on_epoch(result: EpochResult, is_best: bool, current: nn.Module) -> None:
        history.append(result)
        if is_best:  # before the epoch is recorded: an epoch anyone can see has its checkpoint on disk
            save(current, best_epoch=result.epoch, val_accuracy=result.val_accuracy)
            recorder.record_best(run_id, epoch=result.epoch, val_accuracy=result.val_accuracy, checkpoint_path=str(checkpoint))
        recorder.record_epoch(run_id, result)
        if context.epoch_progress:
            context.epoch_progress(spec.kind, result)

    try:
        optimizer = make_optimizer(spec.parameter_groups, hyper)
        best_state, best = fit(
            spec.model,
            optimizer=optimizer,
            scheduler=make_scheduler(optimizer, hyper),
            train_batches=spec.train_batches,
            val_batches=spec.val_batches,
            epochs=hyper.epochs,
            label_smoothing=hyper.label_smoothing,
            seed=hyper.seed,
            on_epoch=on_epoch,
            bf16=spec.bf16,
        )
        spec.model.load_state_dict(best_state)
        metrics, predictions = _test_metrics_and_predictions(spec.predict(spec.model), context.labels)
        save(spec.model, best_epoch=best.epoch, val_accuracy=best.val_accuracy, test_metrics=_summary(metrics))
        recorder.finish_run(run_id, status=RunStatus.FINISHED, test_metrics=metrics, predictions=predictions)
    except KeyboardInterrupt:
        recorder.finish_run(run_id, status=RunStatus.STOPPED, note="interrupted (Ctrl-C); the checkpoint holds the best epoch so far")
        raise
    except Exception as error:
        recorder.finish_run(run_id, status=RunStatus.FAILED, note=f"{type(error).__name__}: {error}")
        raise
    return RunResult(run_id, spec.kind, checkpoint, best.epoch, best.val_accuracy, metrics, history)


def _test_metrics_and_predictions(predicted: Predictions, labels: list[str]) -> tuple[dict[str, Any], list[ItemPrediction]]:
    item_ids, product_ids, parts, y_true, probabilities = predicted
    test = parts == TEST
    predictions = [
        ItemPrediction(
            item_id=item,
            product_id=product,
            part=part,
            true_label=int(truth),
            predicted_label=int(row.argmax()),
            probabilities=[round(float(value), 5) for value in row],
        )
        for item, product, part, truth, row in zip(item_ids, product_ids, parts, y_true, probabilities)
    ]
    return classification_metrics(y_true[test], probabilities[test], labels), predictions


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in ("accuracy", "top3_accuracy", "macro_f1", "n")}
