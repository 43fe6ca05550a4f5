"""Training runs of the image, text and combined classifiers on the catalogue in the DB.

Encoder outputs are computed once and cached (core.features); each run trains on them, keeps the
best epoch by validation accuracy as a checkpoint, records every epoch, its split and the best
model's validation and test predictions in the DB. The test part (20% of products by default)
never influences training or the choice of epoch. Ctrl-C marks a run as stopped.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from sqlalchemy import Engine
from torch import nn

from core.backbones import DEFAULT_BACKBONE, get_backbone
from core.classifiers import CombinedClassifier, FineTunedImageClassifier, ImageHead, TextCNN
from core.compute import autocast
from core.dataset import Catalogue
from core.evaluation import classification_metrics
from core.features import (
    cached_image_features,
    cached_image_maps,
    cached_text_states,
    load_backbone,
    load_text_encoder,
    token_mask,
)
from core.keywords import stacked_scores
from core.model_io import LoadedModel, load_checkpoint, save_checkpoint
from core.splits import TEST, TRAIN, VALIDATION, split_products
from core.text_encoder import TextEncoder
from db import runs
from db.models import RunPrediction

MAX_GRAD_NORM = 5.0
BACKBONE_LR_FACTOR = 0.1  # fine-tuned pretrained blocks learn 10x slower than the new head
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]


@dataclass(frozen=True)
class HyperParameters:
    epochs: int
    optimizer: str  # sgd | adam
    lr: float
    batch_size: int = 32
    momentum: float = 0.0
    step_size: int | None = None  # StepLR; None = constant
    gamma: float = 0.2
    weight_decay: float = 0.0
    dropout: float = 0.3
    label_smoothing: float = 0.1
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 42
    backbone: str = DEFAULT_BACKBONE
    max_tokens: int = 128
    finetune_layers: int = 0  # text: encoder layers fine-tuned with the CNN
    finetune_blocks: int = 0  # image: backbone blocks fine-tuned with the head (on cached maps)
    encoder_lr: float = 5e-5
    modality_dropout: float = 0.2  # combined: chance of hiding the photo (or the text) of an example
    keyword_branch: bool = True  # combined: TF-IDF keyword scores as a third branch
    # combined: 0 = the text branch reads the text model's pooled features; K >= 2 = its logits, on the
    # training side from K fold models (the text run's recipe) that never saw the product, as stacking requires
    text_folds: int = 0


# The seed's tuned settings; epochs and regularisation chosen on validation accuracy.
DEFAULTS: dict[str, HyperParameters] = {
    "image": HyperParameters(epochs=15, optimizer="sgd", lr=0.002, momentum=0.93, step_size=5, gamma=0.2, dropout=0.5, weight_decay=1e-4),
    "text": HyperParameters(epochs=6, optimizer="adam", lr=0.001, dropout=0.3, finetune_layers=2),
    "combined": HyperParameters(epochs=12, optimizer="sgd", lr=0.001, momentum=0.93, step_size=4, gamma=0.2, dropout=0.3),
}


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    seconds: float


@dataclass
class RunResult:
    run_id: int
    kind: str
    checkpoint: Path
    best_epoch: int
    best_val_accuracy: float
    test_metrics: dict[str, Any]
    history: list[EpochResult] = field(default_factory=list)


class TrainingError(RuntimeError):
    """A run that cannot start: too little data, a missing prerequisite; the message says which."""


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
            optimizer.zero_grad()
            with autocast(enabled=bf16):
                logits = model(*inputs)
            loss = nn.functional.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)  # one bad batch must not wreck pretrained layers
            optimizer.step()
            loss_sum += loss.item() * len(targets)
            correct += (logits.argmax(-1) == targets).sum().item()
            count += len(targets)
        learning_rate = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        val_loss, val_accuracy = evaluate_loss(model, val_batches(), bf16=bf16) if val_batches else (float("nan"), float("nan"))
        result = EpochResult(epoch, loss_sum / max(count, 1), correct / max(count, 1), val_loss, val_accuracy, learning_rate,
                             time.perf_counter() - started)
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


def _index_batches(rows: np.ndarray, batch_size: int, make: Callable[[np.ndarray], Batch], generator: np.random.Generator | None = None) -> Iterator[Batch]:
    order = generator.permutation(rows) if generator is not None else rows
    for start in range(0, len(order), batch_size):
        yield make(order[start : start + batch_size])


class Trainer:
    """Trains one kind of model on a catalogue and records the run in the DB."""

    def __init__(self, catalogue: Catalogue, *, engine: Engine, runs_dir: Path, cache_dir: Path, epoch_progress: Callable[[str, EpochResult], None] | None = None,
                 feature_progress: Callable[[str, int, int], None] | None = None) -> None:
        if len(catalogue.labels) < 2:
            raise TrainingError("training needs products of at least two categories")
        self.catalogue = catalogue
        self.engine = engine
        self.runs_dir = runs_dir
        self.cache_dir = cache_dir
        self.labels = catalogue.labels
        self.label_index = {label: index for index, label in enumerate(self.labels)}
        self.product_ids = [product.id for product in catalogue.products]
        self.product_y = np.array([self.label_index[product.label] for product in catalogue.products])
        self.fingerprint = catalogue.fingerprint()
        self.epoch_progress = epoch_progress
        self.feature_progress = feature_progress

    # ----- shared pieces

    def split(self, hyper: HyperParameters) -> dict[str, str]:
        return split_products(self.product_ids, [product.label for product in self.catalogue.products],
                              test_fraction=hyper.test_fraction, val_fraction=hyper.val_fraction, seed=hyper.seed)

    def _features_progress(self, stage: str) -> Callable[[int, int], None] | None:
        if self.feature_progress is None:
            return None
        report = self.feature_progress
        return lambda done, total: report(stage, done, total)

    def image_features(self, backbone_id: str) -> np.ndarray:
        images = self.catalogue.images
        return cached_image_features(get_backbone(backbone_id), [image.id for image in images], [image.checksum for image in images],
                                     [image.path for image in images], cache_dir=self.cache_dir, progress=self._features_progress("photo features"))

    def text_states(self, *, layer: int, max_tokens: int) -> np.ndarray:
        return cached_text_states(self.product_ids, [product.text for product in self.catalogue.products], layer=layer,
                                  max_tokens=max_tokens, cache_dir=self.cache_dir, progress=self._features_progress("text features"))

    def _run(self, kind: str, hyper: HyperParameters, encoder_ids: dict[str, Any], split: dict[str, str], config: dict[str, Any],
             model: nn.Module, parameter_groups: list[dict[str, Any]], train_batches, val_batches, predict, bf16: bool = False,
             extra_info: dict[str, Any] | None = None) -> RunResult:  # type: ignore[no-untyped-def]
        set_seed(hyper.seed)
        run_id = runs.create_run(self.engine, model_kind=kind, encoder_ids=encoder_ids, hyperparameters=asdict(hyper),
                                 split_seed=hyper.seed, labels=self.labels, data_fingerprint=self.fingerprint, split=split)
        checkpoint = self.runs_dir / f"run-{run_id}-{kind}.pt"
        info = {"encoders": encoder_ids, "hyperparameters": asdict(hyper), "data_fingerprint": self.fingerprint, "run_id": run_id,
                **(extra_info or {})}
        if "image_backbone" in encoder_ids:
            info["preprocessing"] = get_backbone(encoder_ids["image_backbone"]).metadata
        optimizer = make_optimizer(parameter_groups, hyper)
        scheduler = make_scheduler(optimizer, hyper)
        history: list[EpochResult] = []

        def on_epoch(result: EpochResult, is_best: bool, current: nn.Module) -> None:
            history.append(result)
            runs.record_epoch(self.engine, run_id, **asdict(result))
            if is_best:
                save_checkpoint(checkpoint, kind=kind, model=current, labels=self.labels, config=config,
                                info={**info, "best_epoch": result.epoch, "val_accuracy": result.val_accuracy})
                runs.record_best(self.engine, run_id, epoch=result.epoch, val_accuracy=result.val_accuracy, checkpoint_path=str(checkpoint))
            if self.epoch_progress:
                self.epoch_progress(kind, result)

        try:
            best_state, best = fit(model, optimizer=optimizer, scheduler=scheduler, train_batches=train_batches, val_batches=val_batches,
                                   epochs=hyper.epochs, label_smoothing=hyper.label_smoothing, seed=hyper.seed, on_epoch=on_epoch, bf16=bf16)
            model.load_state_dict(best_state)
            item_ids, product_ids, parts, y_true, probabilities = predict(model)
            test = parts == TEST
            metrics = classification_metrics(y_true[test], probabilities[test], self.labels)
            predictions = [
                RunPrediction(run_id=run_id, item_id=item, product_id=product, part=part, true_label=int(truth),
                              predicted_label=int(row.argmax()), probabilities=[round(float(value), 5) for value in row])
                for item, product, part, truth, row in zip(item_ids, product_ids, parts, y_true, probabilities)
            ]
            save_checkpoint(checkpoint, kind=kind, model=model, labels=self.labels, config=config,
                            info={**info, "best_epoch": best.epoch, "val_accuracy": best.val_accuracy, "test_metrics": _summary(metrics)})
            runs.finish_run(self.engine, run_id, status="finished", test_metrics=metrics, predictions=predictions)
        except KeyboardInterrupt:
            runs.finish_run(self.engine, run_id, status="stopped", note="interrupted (Ctrl-C); the checkpoint holds the best epoch so far")
            raise
        except Exception as error:
            runs.finish_run(self.engine, run_id, status="failed", note=f"{type(error).__name__}: {error}")
            raise
        return RunResult(run_id, kind, checkpoint, best.epoch, best.val_accuracy, metrics, history)

    # ----- the three models

    def train_image(self, hyper: HyperParameters = DEFAULTS["image"]) -> RunResult:
        split = self.split(hyper)
        features = torch.from_numpy(self.image_features(hyper.backbone))
        images = self.catalogue.images
        label_of = dict(zip(self.product_ids, self.product_y.tolist()))
        y = torch.tensor([label_of[image.product_id] for image in images])
        parts = np.array([split[image.product_id] for image in images])
        train_rows, val_rows = np.where(parts == TRAIN)[0], np.where(parts == VALIDATION)[0]
        if len(train_rows) == 0 or len(val_rows) == 0:
            raise TrainingError("the image model needs photos on both the training and the validation side")
        backbone = get_backbone(hyper.backbone)
        config = {"feature_dim": backbone.feature_dim, "hidden": 512, "dropout": hyper.dropout, "n_classes": len(self.labels),
                  "backbone": backbone.id, "finetune_blocks": hyper.finetune_blocks}
        head = ImageHead(backbone.feature_dim, len(self.labels), hidden=512, dropout=hyper.dropout)
        head.set_normalisation(features[train_rows])
        model: nn.Module = head
        inputs = features
        if hyper.finetune_blocks:
            if not backbone.supports_finetuning:
                raise TrainingError(f"fine-tuning backbone blocks is available for EfficientNet-Lite backbones, not {backbone.id}")
            inputs = torch.from_numpy(cached_image_maps(backbone, [image.id for image in images], [image.checksum for image in images],
                                                        [image.path for image in images], tail_blocks=hyper.finetune_blocks,
                                                        cache_dir=self.cache_dir, progress=self._features_progress("photo maps")))
            model = FineTunedImageClassifier(load_backbone(backbone.id).tail(hyper.finetune_blocks), head)
            groups = [{"params": head.parameters()}, {"params": model.tail.parameters(), "lr": hyper.lr * BACKBONE_LR_FACTOR}]
        else:
            groups = [{"params": head.parameters()}]

        def make(rows: np.ndarray) -> Batch:
            return (inputs[rows].float(),), y[rows]

        def predict(trained: nn.Module):  # type: ignore[no-untyped-def]
            rows = np.where(parts != TRAIN)[0]
            probabilities = predict_probabilities(trained, _index_batches(rows, 256, make), bf16=bool(hyper.finetune_blocks))
            return (np.array([images[row].id for row in rows]), np.array([images[row].product_id for row in rows]), parts[rows],
                    y[rows].numpy(), probabilities)

        return self._run("image", hyper, {"image_backbone": hyper.backbone}, split, config, model, groups,
                         lambda generator: _index_batches(train_rows, hyper.batch_size, make, generator),
                         lambda: _index_batches(val_rows, 256, make), predict, bf16=bool(hyper.finetune_blocks))

    def _text_inputs(self, hyper: HyperParameters) -> tuple[TextEncoder, int, Callable[[np.ndarray], Batch]]:
        """The encoder, the layer whose output the text model reads, and a batch maker over every product."""
        encoder = load_text_encoder(hyper.max_tokens)
        layer = self.text_layer(hyper)
        states = torch.from_numpy(self.text_states(layer=layer, max_tokens=hyper.max_tokens))
        masks = token_mask(states)
        lengths = masks.sum(dim=1)
        y = torch.from_numpy(self.product_y)

        def make(rows: np.ndarray) -> Batch:
            longest = max(1, int(lengths[rows].max()))  # trim the batch to its longest text
            return (states[rows, :longest].float(), masks[rows, :longest]), y[rows]

        return encoder, layer, make

    def _new_text_model(self, encoder: TextEncoder, layer: int, hyper: HyperParameters) -> tuple[TextCNN, list[dict[str, Any]]]:
        """A TextCNN over copies of the encoder's layers from `layer` on, and its parameter groups."""
        model = TextCNN(len(self.labels), channels=256, kernel_size=3, conv_layers=2, dropout=hyper.dropout,
                        top_layers=list(encoder.model.encoder.layer[layer:]), encoder_config=encoder.model.config)
        head = [parameter for name, parameter in model.named_parameters() if not name.startswith("top_layers.")]
        groups = [{"params": head}] + ([{"params": model.top_layers.parameters(), "lr": hyper.encoder_lr}] if hyper.finetune_layers else [])
        return model, groups

    def train_text(self, hyper: HyperParameters = DEFAULTS["text"]) -> RunResult:
        split = self.split(hyper)
        encoder, layer, make = self._text_inputs(hyper)
        y = torch.from_numpy(self.product_y)
        parts = np.array([split[product_id] for product_id in self.product_ids])
        train_rows, val_rows = np.where(parts == TRAIN)[0], np.where(parts == VALIDATION)[0]
        config = {"n_classes": len(self.labels), "channels": 256, "kernel_size": 3, "conv_layers": 2, "dropout": hyper.dropout,
                  "finetune_layers": hyper.finetune_layers, "text_layer": layer, "max_tokens": hyper.max_tokens}
        model, groups = self._new_text_model(encoder, layer, hyper)

        def predict(trained: nn.Module):  # type: ignore[no-untyped-def]
            rows = np.where(parts != TRAIN)[0]
            probabilities = predict_probabilities(trained, _index_batches(rows, 128, make), bf16=True)
            ids = np.array(self.product_ids)[rows]
            return ids, ids, parts[rows], y[rows].numpy(), probabilities

        encoder_ids = {"text_encoder": TextEncoder.id, "text_layer": layer, "max_tokens": hyper.max_tokens}
        return self._run("text", hyper, encoder_ids, split, config, model, groups,
                         lambda generator: _index_batches(train_rows, hyper.batch_size, make, generator),
                         lambda: _index_batches(val_rows, 128, make), predict, bf16=True)

    def train_combined(self, text_model: LoadedModel | Path, hyper: HyperParameters = DEFAULTS["combined"]) -> RunResult:
        """The text branch takes the trained text model's features, so both must share the split."""
        text = text_model if isinstance(text_model, LoadedModel) else load_checkpoint(text_model)
        text_hyper = text.info.get("hyperparameters", {})
        if text_hyper.get("seed") != hyper.seed or text_hyper.get("test_fraction") != hyper.test_fraction or text.info.get("data_fingerprint") != self.fingerprint:
            raise TrainingError("the combined model needs a text model trained on this catalogue with the same split seed and test fraction")
        split = self.split(hyper)
        product_image, has_image = self.catalogue.photo_means(self.image_features(hyper.backbone))
        parts = np.array([split[product_id] for product_id in self.product_ids])
        train_rows, val_rows = np.where(parts == TRAIN)[0], np.where(parts == VALIDATION)[0]
        if hyper.text_folds:
            text_input, text_features = "logits", self.cross_fitted_text_logits(text, train_rows, folds=hyper.text_folds, seed=hyper.seed)
        else:
            text_input, text_features = "features", self.text_model_features(text, max_tokens=int(text.config.get("max_tokens", 128)))
        keyword_state, keyword_tensor = None, None
        if hyper.keyword_branch:
            keyword_state, keyword_scores = self.keyword_scores(train_rows, seed=hyper.seed)
            keyword_tensor = torch.from_numpy(keyword_scores)
        image_tensor, text_tensor = torch.from_numpy(product_image), torch.from_numpy(text_features)
        has_image_tensor, has_text_tensor = torch.from_numpy(has_image), torch.ones(len(self.product_ids), dtype=torch.bool)
        y = torch.from_numpy(self.product_y)
        keyword_dim = len(self.labels) if keyword_tensor is not None else 0
        config = {"image_dim": image_tensor.shape[1], "text_dim": text_tensor.shape[1], "n_classes": len(self.labels), "dropout": hyper.dropout,
                  "text_layer": text.text_layer, "max_tokens": int(text.config.get("max_tokens", 128)), "keyword_dim": keyword_dim,
                  "text_input": text_input}
        model = CombinedClassifier(image_tensor.shape[1], text_tensor.shape[1], len(self.labels), keyword_dim=keyword_dim, dropout=hyper.dropout)
        model.set_normalisation(image_tensor[train_rows[has_image[train_rows]]], text_tensor[train_rows],
                                None if keyword_tensor is None else keyword_tensor[train_rows])
        torch_generator = torch.Generator().manual_seed(hyper.seed)

        def make(rows: np.ndarray, *, hide: bool = False) -> Batch:
            show_image, show_text = has_image_tensor[rows].clone(), has_text_tensor[rows].clone()
            if hide:  # modality dropout: learn to answer from one input alone
                draw = torch.rand(len(rows), generator=torch_generator)
                show_image &= ~(draw < hyper.modality_dropout)
                show_text &= ~((draw >= hyper.modality_dropout) & (draw < 2 * hyper.modality_dropout) & show_image)
            keywords = () if keyword_tensor is None else (keyword_tensor[rows],)
            return (image_tensor[rows], text_tensor[rows], show_image, show_text, *keywords), y[rows]

        def predict(trained: nn.Module):  # type: ignore[no-untyped-def]
            rows = np.where(parts != TRAIN)[0]
            probabilities = predict_probabilities(trained, _index_batches(rows, 512, make))
            ids = np.array(self.product_ids)[rows]
            return ids, ids, parts[rows], y[rows].numpy(), probabilities

        encoder_ids = {"image_backbone": hyper.backbone, "text_encoder": TextEncoder.id, "text_layer": text.text_layer,
                       "text_model_run": text.info.get("run_id")}
        extra_info = {} if keyword_state is None else {"keyword_scorer": keyword_state}
        return self._run("combined", hyper, encoder_ids, split, config, model, [{"params": model.parameters()}],
                         lambda generator: _index_batches(train_rows, hyper.batch_size, lambda rows: make(rows, hide=True), generator),
                         lambda: _index_batches(val_rows, 512, make), predict, extra_info=extra_info)

    def keyword_scores(self, train_rows: np.ndarray, *, seed: int) -> tuple[dict[str, object], np.ndarray]:
        """Keyword scores of every product: cross-fitted on the training side, from the scorer fitted
        on all of it elsewhere; and that scorer's state, for the checkpoint."""
        scorer, scores = stacked_scores([product.text for product in self.catalogue.products], self.product_y, train_rows,
                                        n_classes=len(self.labels), seed=seed)
        return scorer.to_state(), scores

    def text_model_features(self, text: LoadedModel, *, max_tokens: int, logits: bool = False) -> np.ndarray:
        states = torch.from_numpy(self.text_states(layer=text.text_layer, max_tokens=max_tokens))
        return text_features(text, states, logits=logits)

    def cross_fitted_text_logits(self, text: LoadedModel, train_rows: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
        """(N, classes) text logits for stacking: each training row's from a fold model trained without it
        (the text run's recipe and its best epoch count), every other row's from the text run's model.

        The text run's own model has fitted the training rows, so its outputs there are more confident
        than anywhere else: a combined model trained on them would trust the text too much.
        """
        known = {item.name for item in fields(HyperParameters)}
        text_hyper = replace(HyperParameters(**{key: value for key, value in text.info["hyperparameters"].items() if key in known}), seed=seed)
        epochs = int(text.info.get("best_epoch") or text_hyper.epochs)
        if self.text_layer(text_hyper) != text.text_layer:
            raise TrainingError("the text run's checkpoint does not match its hyper-parameters (encoder layer)")
        logits = self.text_model_features(text, max_tokens=text_hyper.max_tokens, logits=True)
        counts = np.bincount(self.product_y[train_rows])
        splitter = StratifiedKFold(max(2, min(folds, int(counts[counts > 0].min()))), shuffle=True, random_state=seed)
        splits = [(train_rows[fit_index], train_rows[score_index])
                  for fit_index, score_index in splitter.split(train_rows, self.product_y[train_rows])]
        out_of_fold, _ = self.fold_text_logits(text_hyper, splits, epochs=epochs, seed=seed)
        logits[train_rows] = out_of_fold[train_rows]
        return logits

    def text_layer(self, hyper: HyperParameters) -> int:
        """The encoder layer whose output a text model by `hyper` reads."""
        return load_text_encoder(hyper.max_tokens).n_layers - hyper.finetune_layers

    def fold_text_logits(self, hyper: HyperParameters, splits: Sequence[tuple[np.ndarray, np.ndarray]], *, epochs: int, seed: int,
                         also: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Out-of-fold text logits: per (fit rows, score rows), a text model by `hyper`'s recipe trained on
        the fit rows for `epochs` (no validation) scores the score rows; the rest of the (N, classes)
        array stays zero. With `also`, the mean of every fold model's logits for those rows too."""
        encoder, layer, make = self._text_inputs(hyper)
        logits = np.zeros((len(self.product_ids), len(self.labels)), np.float32)
        also_sum = None if also is None else np.zeros((len(also), len(self.labels)), np.float32)
        for fold, (fit_rows, score_rows) in enumerate(splits):
            set_seed(seed + fold)
            model, groups = self._new_text_model(encoder, layer, hyper)
            optimizer = make_optimizer(groups, hyper)
            fit(model, optimizer=optimizer, scheduler=make_scheduler(optimizer, hyper), val_batches=None, epochs=epochs,
                label_smoothing=hyper.label_smoothing, seed=seed + fold, on_epoch=lambda *_: None, bf16=True,
                train_batches=lambda generator, rows=fit_rows: _index_batches(rows, hyper.batch_size, make, generator))
            logits[score_rows] = predict_logits(model, _index_batches(score_rows, 128, make), bf16=True)
            if also is not None and also_sum is not None:
                also_sum += predict_logits(model, _index_batches(also, 128, make), bf16=True)
            if self.feature_progress:
                self.feature_progress("text fold models", fold + 1, len(splits))
        return logits, None if also_sum is None else also_sum / len(splits)



@torch.no_grad()
def text_features(text: LoadedModel, states: torch.Tensor, *, batch_size: int = 128, logits: bool = False) -> np.ndarray:
    """The text model's pooled CNN features, or its logits (the combined model's text input), batch by batch."""
    model: TextCNN = text.model  # type: ignore[assignment]
    model.eval()
    forward = model.forward if logits else model.features
    masks = token_mask(states)
    parts = []
    for start in range(0, len(states), batch_size):
        chunk_mask = masks[start : start + batch_size]
        longest = max(1, int(chunk_mask.sum(dim=1).max()))
        with autocast():
            parts.append(forward(states[start : start + batch_size, :longest].float(), chunk_mask[:, :longest]).float().numpy())
    width = len(text.labels) if logits else model.feature_dim
    return np.concatenate(parts) if parts else np.empty((0, width), np.float32)


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in ("accuracy", "top3_accuracy", "macro_f1", "n")}


def with_overrides(hyper: HyperParameters, **overrides: Any) -> HyperParameters:
    return replace(hyper, **{key: value for key, value in overrides.items() if value is not None})
