"""Training runs of the image, text and combined classifiers on the catalogue in the DB.

Encoder outputs are computed once and cached (core.encoders.features); each run trains on them, keeps the
best epoch by validation accuracy as a checkpoint, records every epoch, its split and the best
model's validation and test predictions in the DB. The test part (20% of products by default)
never influences training or the choice of epoch. Ctrl-C marks a run as stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.data.catalogue import Catalogue
from core.data.splits import TRAIN, VALIDATION, split_products
from core.encoders.backbones import ImageBackbone, get_backbone
from core.encoders.features import (
    cached_image_features,
    cached_image_maps,
    cached_text_states,
    load_splittable_backbone,
    load_text_encoder,
    token_mask,
)
from core.encoders.text_encoder import TextEncoder
from core.models.checkpoints import LoadedModel, load_checkpoint
from core.models.networks import CombinedClassifier, FineTunedImageClassifier, ImageHead, TextCNN
from core.runtime.progress import StageProgress, for_stage
from core.training.hyperparameters import DEFAULTS, HyperParameters
from core.training.loop import Batch, index_batches
from core.training.records import EpochResult, RunRecorder, TrainingError
from core.training.runs import RunContext, RunResult, RunSpec, execute_run, held_out_predictor
from core.training.stacking import StackedInputs

BACKBONE_LR_FACTOR = 0.1  # fine-tuned pretrained blocks learn 10x slower than the new head


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
            get_backbone(backbone_id), images, cache_dir=self.cache_dir, progress=for_stage(self.feature_progress, "photo features")
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

    def _run(self, spec: RunSpec) -> RunResult:
        context = RunContext(self.recorder, self.runs_dir, self.labels, self.fingerprint, self.epoch_progress)
        return execute_run(spec, context)

    # ----- the three models

    def train_image(self, hyper: HyperParameters = DEFAULTS["image"]) -> RunResult:
        split = self.split(hyper)
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
        model, groups, inputs = self._new_image_model(backbone, hyper, train_rows)

        def make(rows: np.ndarray) -> Batch:
            return (inputs[rows].float(),), y[rows]

        item_ids, product_ids = np.array([image.id for image in images]), np.array([image.product_id for image in images])
        predict = held_out_predictor(make, parts, y.numpy(), item_ids, product_ids, batch_size=256, bf16=bool(hyper.finetune_blocks))
        return self._run(
            RunSpec(
                "image",
                hyper,
                {"image_backbone": hyper.backbone},
                split,
                config,
                model,
                groups,
                train_batches=lambda generator: index_batches(train_rows, hyper.batch_size, make, generator),
                val_batches=lambda: index_batches(val_rows, 256, make),
                predict=predict,
                bf16=bool(hyper.finetune_blocks),
            )
        )

    def _new_image_model(
        self, backbone: ImageBackbone, hyper: HyperParameters, train_rows: np.ndarray
    ) -> tuple[nn.Module, list[dict[str, Any]], torch.Tensor]:
        """The image model (a head on pooled features, or fine-tuned last blocks + head on cached
        feature maps), its parameter groups, and the inputs it reads for every photo."""
        features = torch.from_numpy(self.image_features(hyper.backbone))
        head = ImageHead(backbone.feature_dim, len(self.labels), hidden=512, dropout=hyper.dropout)
        head.set_normalisation(features[train_rows])
        if not hyper.finetune_blocks:
            return head, [{"params": head.parameters()}], features
        if not backbone.supports_finetuning:
            raise TrainingError(f"fine-tuning backbone blocks is available for EfficientNet-Lite backbones, not {backbone.id}")
        images = self.catalogue.images
        maps = cached_image_maps(
            backbone,
            images,
            tail_blocks=hyper.finetune_blocks,
            cache_dir=self.cache_dir,
            progress=for_stage(self.feature_progress, "photo maps"),
        )
        model = FineTunedImageClassifier(load_splittable_backbone(backbone.id).tail(hyper.finetune_blocks), head)
        groups: list[dict[str, Any]] = [
            {"params": head.parameters()},
            {"params": model.tail.parameters(), "lr": hyper.lr * BACKBONE_LR_FACTOR},
        ]
        return model, groups, torch.from_numpy(maps)

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

        ids = np.array(self.product_ids)
        predict = held_out_predictor(make, parts, y.numpy(), ids, ids, batch_size=128, bf16=True)
        encoder_ids = {"text_encoder": TextEncoder.id, "text_layer": layer, "max_tokens": hyper.max_tokens}
        return self._run(
            RunSpec(
                "text",
                hyper,
                encoder_ids,
                split,
                config,
                model,
                groups,
                train_batches=lambda generator: index_batches(train_rows, hyper.batch_size, make, generator),
                val_batches=lambda: index_batches(val_rows, 128, make),
                predict=predict,
                bf16=True,
            )
        )

    def train_combined(self, text_model: LoadedModel | Path, hyper: HyperParameters = DEFAULTS["combined"]) -> RunResult:
        """The text branch takes the trained text model's features, so both must share the split."""
        text = text_model if isinstance(text_model, LoadedModel) else load_checkpoint(text_model)
        self._check_same_split(text, hyper)
        split = self.split(hyper)
        parts = np.array([split[product_id] for product_id in self.product_ids])
        train_rows, val_rows = np.where(parts == TRAIN)[0], np.where(parts == VALIDATION)[0]
        inputs, keyword_state, config = self._combined_inputs(text, hyper, train_rows)
        image, text_features, has_image, keywords = inputs
        has_text, y = torch.ones(len(self.product_ids), dtype=torch.bool), torch.from_numpy(self.product_y)
        model = CombinedClassifier(
            image.shape[1], text_features.shape[1], len(self.labels), keyword_dim=config["keyword_dim"], dropout=hyper.dropout
        )
        model.set_normalisation(
            image[train_rows[has_image[train_rows].numpy()]], text_features[train_rows], None if keywords is None else keywords[train_rows]
        )
        torch_generator = torch.Generator().manual_seed(hyper.seed)

        def make(rows: np.ndarray, *, hide: bool = False) -> Batch:
            show_image, show_text = has_image[rows].clone(), has_text[rows].clone()
            if hide:  # modality dropout: learn to answer from one input alone
                draw = torch.rand(len(rows), generator=torch_generator)
                show_image &= ~(draw < hyper.modality_dropout)
                show_text &= ~((draw >= hyper.modality_dropout) & (draw < 2 * hyper.modality_dropout) & show_image)
            return (image[rows], text_features[rows], show_image, show_text, *(() if keywords is None else (keywords[rows],))), y[rows]

        ids = np.array(self.product_ids)
        predict = held_out_predictor(make, parts, y.numpy(), ids, ids, batch_size=512)
        encoder_ids = {
            "image_backbone": hyper.backbone,
            "text_encoder": TextEncoder.id,
            "text_layer": text.text_layer,
            "text_model_run": text.info.get("run_id"),
        }
        return self._run(
            RunSpec(
                "combined",
                hyper,
                encoder_ids,
                split,
                config,
                model,
                [{"params": model.parameters()}],
                train_batches=lambda generator: index_batches(train_rows, hyper.batch_size, lambda rows: make(rows, hide=True), generator),
                val_batches=lambda: index_batches(val_rows, 512, make),
                predict=predict,
                extra_info={} if keyword_state is None else {"keyword_scorer": keyword_state},
            )
        )
