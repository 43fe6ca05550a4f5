"""The one training loop: a step every trainer uses (the classifiers' runs, the review queue's fold
models, the scratch-CNN baseline), and `fit` over epochs with validation and the best epoch kept."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from core.runtime.compute import autocast
from core.training.hyperparameters import HyperParameters
from core.training.records import EpochResult

MAX_GRAD_NORM = 5.0
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def make_optimizer(parameter_groups: list[dict[str, Any]], hyper: HyperParameters) -> torch.optim.Optimizer:
    if hyper.optimizer == "sgd":
        return torch.optim.SGD(parameter_groups, lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay)
    if hyper.optimizer == "adam":
        return torch.optim.AdamW(parameter_groups, lr=hyper.lr, weight_decay=hyper.weight_decay)
    raise ValueError(f"unknown optimizer {hyper.optimizer!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, hyper: HyperParameters) -> torch.optim.lr_scheduler.LRScheduler | None:
    return torch.optim.lr_scheduler.StepLR(optimizer, hyper.step_size, hyper.gamma) if hyper.step_size else None


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    max_grad_norm: float | None = None,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on one batch (cross-entropy); returns the batch's loss and logits."""
    optimizer.zero_grad()
    with autocast(enabled=bf16):
        logits = model(*inputs)
    loss = nn.functional.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
    loss.backward()
    if max_grad_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return loss, logits


def fit(
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    train_batches: Callable[[np.random.Generator], Iterator[Batch]],
    val_batches: Callable[[], Iterator[Batch]] | None,
    epochs: int,
    label_smoothing: float,
    seed: int,
    on_epoch: Callable[[EpochResult, bool, nn.Module], None],
    bf16: bool = False,
) -> tuple[dict[str, torch.Tensor], EpochResult]:
    """Train; after each epoch report it, with whether it is the best so far by validation accuracy
    (without validation batches every epoch counts as the best: the last one is kept)."""
    generator = np.random.default_rng(seed)
    best_state: dict[str, torch.Tensor] | None = None
    best: EpochResult | None = None
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_sum = correct = count = 0.0
        for inputs, targets in train_batches(generator):
            # Clipped: one bad batch must not wreck pretrained layers.
            loss, logits = train_step(
                model, optimizer, inputs, targets, label_smoothing=label_smoothing, max_grad_norm=MAX_GRAD_NORM, bf16=bf16
            )
            loss_sum += loss.item() * len(targets)
            correct += (logits.argmax(-1) == targets).sum().item()
            count += len(targets)
        learning_rate = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        val_loss, val_accuracy = evaluate_loss(model, val_batches(), bf16=bf16) if val_batches else (float("nan"), float("nan"))
        result = EpochResult(
            epoch, loss_sum / max(count, 1), correct / max(count, 1), val_loss, val_accuracy, learning_rate, time.perf_counter() - started
        )
        is_best = best is None or val_batches is None or result.val_accuracy > best.val_accuracy
        if is_best:
            best, best_state = result, copy.deepcopy(model.state_dict())
        on_epoch(result, is_best, model)
    assert best is not None and best_state is not None
    return best_state, best


@torch.no_grad()
def evaluate_loss(model: nn.Module, batches: Iterator[Batch], *, bf16: bool = False) -> tuple[float, float]:
    model.eval()
    loss_sum = correct = count = 0.0
    for inputs, targets in batches:
        with autocast(enabled=bf16):
            logits = model(*inputs).float()
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        correct += (logits.argmax(-1) == targets).sum().item()
        count += len(targets)
    return loss_sum / max(count, 1), correct / max(count, 1)


@torch.no_grad()
def predict_logits(model: nn.Module, batches: Iterator[Batch], *, bf16: bool = False) -> np.ndarray:
    model.eval()
    parts = []
    for inputs, _ in batches:
        with autocast(enabled=bf16):
            parts.append(model(*inputs).float().numpy())
    return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)


def predict_probabilities(model: nn.Module, batches: Iterator[Batch], *, bf16: bool = False) -> np.ndarray:
    return torch.softmax(torch.from_numpy(predict_logits(model, batches, bf16=bf16)), dim=-1).numpy()


def index_batches(
    rows: np.ndarray, batch_size: int, make: Callable[[np.ndarray], Batch], generator: np.random.Generator | None = None
) -> Iterator[Batch]:
    order = generator.permutation(rows) if generator is not None else rows
    for start in range(0, len(order), batch_size):
        yield make(order[start : start + batch_size])
