"""A training run's recipe: its hyper-parameters, the tuned defaults per model kind, and overrides."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from core.encoders.backbones import DEFAULT_BACKBONE


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


def with_overrides(hyper: HyperParameters, **overrides: Any) -> HyperParameters:
    return replace(hyper, **{key: value for key, value in overrides.items() if value is not None})
