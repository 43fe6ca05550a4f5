"""Training runs of the image, text and combined classifiers on the catalogue in the DB.

Encoder outputs are computed once and cached (core.encoders.features); each run trains on them, keeps the
best epoch by validation accuracy as a checkpoint, records every epoch, its split and the best
model's validation and test predictions in the DB. The test part (20% of products by default)
never influences training or the choice of epoch. Ctrl-C marks a run as stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.data.catalogue import Catalogue
from core.data.splits import TEST, TRAIN, VALIDATION, split_products
from core.encoders.backbones import get_backbone
from core.encoders.features import (
    cached_image_features,
    cached_image_maps,
    cached_text_states,
    load_backbone,
    load_text_encoder,
    token_mask,
)
from core.encoders.text_encoder import TextEncoder
from core.enums import RunStatus
from core.evaluation.metrics import classification_metrics
from core.models.checkpoints import LoadedModel, load_checkpoint, save_checkpoint
from core.models.networks import CombinedClassifier, FineTunedImageClassifier, ImageHead, TextCNN
from core.runtime.progress import StageProgress, for_stage
from core.training.hyperparameters import DEFAULTS, HyperParameters
from core.training.loop import Batch, fit, index_batches, make_optimizer, make_scheduler, predict_probabilities, set_seed
from core.training.records import EpochResult, ItemPrediction, RunRecorder, TrainingError
from core.training.stacking import StackedInputs

BACKBONE_LR_FACTOR = 0.1  # fine-tuned pretrained blocks learn 10x slower than the new head


@dataclass
class RunResult:
    run_id: int
    kind: str
    checkpoint: Path
    best_epoch: int
    best_val_accuracy: float
    test_metrics: dict[str, Any]
    history: list[EpochResult] = field(default_factory=list)


class Trainer(StackedInputs):
    """Trains one kind of model on a catalogue and reports the run to `recorder`."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        recorder: RunRecorder,
        runs_dir: Path,
        cache_dir: Path,
        epoch_progress: Callable[[str, EpochResult], None] | None = None,
        feature_progress: StageProgress | None = None,
    ) -> None:
        if len(catalogue.labels) < 2:
            raise TrainingError("training needs products of at least two categories")
        self.catalogue = catalogue
        self.recorder = recorder
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
        return split_products(
            self.product_ids,
            [product.label for product in self.catalogue.products],
            test_fraction=hyper.test_fraction,
            val_fraction=hyper.val_fraction,
            seed=hyper.seed,
        )

    def image_features(self, backbone_id: str) -> np.ndarray:
        images = self.catalogue.images
        return cached_image_features(
            get_backbone(backbone_id),
            [image.id for image in images],
            [image.checksum for image in images],
            [image.path for image in images],
            cache_dir=self.cache_dir,
            progress=for_stage(self.feature_progress, "photo features"),
        )

    def text_states(self, *, layer: int, max_tokens: int) -> np.ndarray:
        return cached_text_states(
            self.product_ids,
            [product.text for product in self.catalogue.products],
            layer=layer,
            max_tokens=max_tokens,
            cache_dir=self.cache_dir,
            progress=for_stage(self.feature_progress, "text features"),
        )

    def _run(
        self,
        kind: str,
        hyper: HyperParameters,
        encoder_ids: dict[str, Any],
        split: dict[str, str],
        config: dict[str, Any],
        model: nn.Module,
        parameter_groups: list[dict[str, Any]],
        train_batches,
        val_batches,
        predict,
        bf16: bool = False,
        extra_info: dict[str, Any] | None = None,
    ) -> RunResult:  # type: ignore[no-untyped-def]
        set_seed(hyper.seed)
        run_id = self.recorder.create_run(
            model_kind=kind,
            encoder_ids=encoder_ids,
            hyperparameters=asdict(hyper),
            split_seed=hyper.seed,
            labels=self.labels,
            data_fingerprint=self.fingerprint,
            split=split,
        )
        checkpoint = self.runs_dir / f"run-{run_id}-{kind}.pt"
        info = {
            "encoders": encoder_ids,
            "hyperparameters": asdict(hyper),
            "data_fingerprint": self.fingerprint,
            "run_id": run_id,
            **(extra_info or {}),
        }
        if "image_backbone" in encoder_ids:
            info["preprocessing"] = get_backbone(encoder_ids["image_backbone"]).metadata
        optimizer = make_optimizer(parameter_groups, hyper)
        scheduler = make_scheduler(optimizer, hyper)
        history: list[EpochResult] = []

        def on_epoch(result: EpochResult, is_best: bool, current: nn.Module) -> None:
            history.append(result)
            self.recorder.record_epoch(run_id, result)
            if is_best:
                save_checkpoint(
                    checkpoint,
                    kind=kind,
                    model=current,
                    labels=self.labels,
                    config=config,
                    info={**info, "best_epoch": result.epoch, "val_accuracy": result.val_accuracy},
                )
                self.recorder.record_best(run_id, epoch=result.epoch, val_accuracy=result.val_accuracy, checkpoint_path=str(checkpoint))
            if self.epoch_progress:
                self.epoch_progress(kind, result)

        try:
            best_state, best = fit(
                model,
                optimizer=optimizer,
                scheduler=scheduler,
                train_batches=train_batches,
                val_batches=val_batches,
                epochs=hyper.epochs,
                label_smoothing=hyper.label_smoothing,
                seed=hyper.seed,
                on_epoch=on_epoch,
                bf16=bf16,
            )
            model.load_state_dict(best_state)
            item_ids, product_ids, parts, y_true, probabilities = predict(model)
            test = parts == TEST
            metrics = classification_metrics(y_true[test], probabilities[test], self.labels)
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
            save_checkpoint(
                checkpoint,
                kind=kind,
                model=model,
                labels=self.labels,
                config=config,
                info={**info, "best_epoch": best.epoch, "val_accuracy": best.val_accuracy, "test_metrics": _summary(metrics)},
            )
            self.recorder.finish_run(run_id, status=RunStatus.FINISHED, test_metrics=metrics, predictions=predictions)
        except KeyboardInterrupt:
            self.recorder.finish_run(
                run_id, status=RunStatus.STOPPED, note="interrupted (Ctrl-C); the checkpoint holds the best epoch so far"
            )
            raise
        except Exception as error:
            self.recorder.finish_run(run_id, status=RunStatus.FAILED, note=f"{type(error).__name__}: {error}")
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
        config = {
            "feature_dim": backbone.feature_dim,
            "hidden": 512,
            "dropout": hyper.dropout,
            "n_classes": len(self.labels),
            "backbone": backbone.id,
            "finetune_blocks": hyper.finetune_blocks,
        }
        head = ImageHead(backbone.feature_dim, len(self.labels), hidden=512, dropout=hyper.dropout)
        head.set_normalisation(features[train_rows])
        model: nn.Module = head
        inputs = features
        if hyper.finetune_blocks:
            if not backbone.supports_finetuning:
                raise TrainingError(f"fine-tuning backbone blocks is available for EfficientNet-Lite backbones, not {backbone.id}")
            inputs = torch.from_numpy(
                cached_image_maps(
                    backbone,
                    [image.id for image in images],
                    [image.checksum for image in images],
                    [image.path for image in images],
                    tail_blocks=hyper.finetune_blocks,
                    cache_dir=self.cache_dir,
                    progress=for_stage(self.feature_progress, "photo maps"),
                )
            )
            model = FineTunedImageClassifier(load_backbone(backbone.id).tail(hyper.finetune_blocks), head)
            groups = [{"params": head.parameters()}, {"params": model.tail.parameters(), "lr": hyper.lr * BACKBONE_LR_FACTOR}]
        else:
            groups = [{"params": head.parameters()}]

        def make(rows: np.ndarray) -> Batch:
            return (inputs[rows].float(),), y[rows]

        def predict(trained: nn.Module):  # type: ignore[no-untyped-def]
            rows = np.where(parts != TRAIN)[0]
            probabilities = predict_probabilities(trained, index_batches(rows, 256, make), bf16=bool(hyper.finetune_blocks))
            return (
                np.array([images[row].id for row in rows]),
                np.array([images[row].product_id for row in rows]),
                parts[rows],
                y[rows].numpy(),
                probabilities,
            )

        return self._run(
            "image",
            hyper,
            {"image_backbone": hyper.backbone},
            split,
            config,
            model,
            groups,
            lambda generator: index_batches(train_rows, hyper.batch_size, make, generator),
            lambda: index_batches(val_rows, 256, make),
            predict,
            bf16=bool(hyper.finetune_blocks),
        )

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
        model = TextCNN(
            len(self.labels),
            channels=256,
            kernel_size=3,
            conv_layers=2,
            dropout=hyper.dropout,
            top_layers=list(encoder.model.encoder.layer[layer:]),
            encoder_config=encoder.model.config,
        )
        head = [parameter for name, parameter in model.named_parameters() if not name.startswith("top_layers.")]
        groups = [{"params": head}] + ([{"params": model.top_layers.parameters(), "lr": hyper.encoder_lr}] if hyper.finetune_layers else [])
        return model, groups

    def train_text(self, hyper: HyperParameters = DEFAULTS["text"]) -> RunResult:
        split = self.split(hyper)
        encoder, layer, make = self._text_inputs(hyper)
        y = torch.from_numpy(self.product_y)
        parts = np.array([split[product_id] for product_id in self.product_ids])
        train_rows, val_rows = np.where(parts == TRAIN)[0], np.where(parts == VALIDATION)[0]
        config = {
            "n_classes": len(self.labels),
            "channels": 256,
            "kernel_size": 3,
            "conv_layers": 2,
            "dropout": hyper.dropout,
            "finetune_layers": hyper.finetune_layers,
            "text_layer": layer,
            "max_tokens": hyper.max_tokens,
        }
        model, groups = self._new_text_model(encoder, layer, hyper)

        def predict(trained: nn.Module):  # type: ignore[no-untyped-def]
            rows = np.where(parts != TRAIN)[0]
            probabilities = predict_probabilities(trained, index_batches(rows, 128, make), bf16=True)
            ids = np.array(self.product_ids)[rows]
            return ids, ids, parts[rows], y[rows].numpy(), probabilities

        encoder_ids = {"text_encoder": TextEncoder.id, "text_layer": layer, "max_tokens": hyper.max_tokens}
        return self._run(
            "text",
            hyper,
            encoder_ids,
            split,
            config,
            model,
            groups,
            lambda generator: index_batches(train_rows, hyper.batch_size, make, generator),
            lambda: index_batches(val_rows, 128, make),
            predict,
            bf16=True,
        )

    def train_combined(self, text_model: LoadedModel | Path, hyper: HyperParameters = DEFAULTS["combined"]) -> RunResult:
        """The text branch takes the trained text model's features, so both must share the split."""
        text = text_model if isinstance(text_model, LoadedModel) else load_checkpoint(text_model)
        text_hyper = text.info.get("hyperparameters", {})
        if (
            text_hyper.get("seed") != hyper.seed
            or text_hyper.get("test_fraction") != hyper.test_fraction
            or text.info.get("data_fingerprint") != self.fingerprint
        ):
            raise TrainingError(
                "the combined model needs a text model trained on this catalogue with the same split seed and test fraction"
            )
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
        config = {
            "image_dim": image_tensor.shape[1],
            "text_dim": text_tensor.shape[1],
            "n_classes": len(self.labels),
            "dropout": hyper.dropout,
            "text_layer": text.text_layer,
            "max_tokens": int(text.config.get("max_tokens", 128)),
            "keyword_dim": keyword_dim,
            "text_input": text_input,
        }
        model = CombinedClassifier(
            image_tensor.shape[1], text_tensor.shape[1], len(self.labels), keyword_dim=keyword_dim, dropout=hyper.dropout
        )
        model.set_normalisation(
            image_tensor[train_rows[has_image[train_rows]]],
            text_tensor[train_rows],
            None if keyword_tensor is None else keyword_tensor[train_rows],
        )
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
            probabilities = predict_probabilities(trained, index_batches(rows, 512, make))
            ids = np.array(self.product_ids)[rows]
            return ids, ids, parts[rows], y[rows].numpy(), probabilities

        encoder_ids = {
            "image_backbone": hyper.backbone,
            "text_encoder": TextEncoder.id,
            "text_layer": text.text_layer,
            "text_model_run": text.info.get("run_id"),
        }
        extra_info = {} if keyword_state is None else {"keyword_scorer": keyword_state}
        return self._run(
            "combined",
            hyper,
            encoder_ids,
            split,
            config,
            model,
            [{"params": model.parameters()}],
            lambda generator: index_batches(train_rows, hyper.batch_size, lambda rows: make(rows, hide=True), generator),
            lambda: index_batches(val_rows, 512, make),
            predict,
            extra_info=extra_info,
        )


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in ("accuracy", "top3_accuracy", "macro_f1", "n")}
