"""Finding likely label errors: out-of-sample probabilities for every product from k-fold
cross-validation of the combined model, then cleanlab's label issues and label-quality scores.

The combined model here runs on frozen, cached features (the photo backbone's features, MiniLM
sentence embeddings, and TF-IDF keyword scores cross-fitted inside each fold), never on the
fine-tuned text model: that model trained on most products, so its features would carry what it
learnt about their labels. Each product is scored only by the fold model that never saw it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from core.data.catalogue import Catalogue
from core.data.splits import cross_fit, stratified_folds
from core.encoders.backbones import DEFAULT_BACKBONE, get_backbone
from core.encoders.features import cached_image_features
from core.models.keyword_branch import stacked_scores
from core.models.networks import CombinedClassifier
from core.runtime.progress import Progress
from core.search.indexes import cached_sentence_embeddings
from core.training.loop import train_step


@dataclass(frozen=True)
class ProductFeatures:
    """Per product: mean photo features (zeros without a photo), sentence embedding, model text."""

    image: np.ndarray  # (N, image_dim)
    has_image: np.ndarray  # (N,) bool
    text: np.ndarray  # (N, 384)
    texts: Sequence[str]


@dataclass(frozen=True)
class LabelIssue:
    index: int  # row in the inputs
    given: int
    suggested: int
    score: float  # label-quality score in [0, 1], lower = more likely mislabelled
    is_issue: bool
    probabilities: np.ndarray


def _train_fold(
    features: ProductFeatures, keywords: np.ndarray, labels: np.ndarray, rows: np.ndarray, n_classes: int, *, epochs: int, seed: int
) -> CombinedClassifier:
    torch.manual_seed(seed)
    model = CombinedClassifier(features.image.shape[1], features.text.shape[1], n_classes, keyword_dim=n_classes, dropout=0.3)
    image, text, keyword = (torch.from_numpy(array[rows]).float() for array in (features.image, features.text, keywords))
    has_image, has_text = torch.from_numpy(features.has_image[rows]), torch.ones(len(rows), dtype=torch.bool)
    model.set_normalisation(image[has_image] if has_image.any() else image, text, keyword)
    targets = torch.from_numpy(labels[rows]).long()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(rows), generator=generator).split(64):
            train_step(
                model,
                optimizer,
                (image[batch], text[batch], has_image[batch], has_text[batch], keyword[batch]),
                targets[batch],
                label_smoothing=0.1,
            )
    return model.eval()


def out_of_sample_probabilities(
    features: ProductFeatures,
    labels: Sequence[int] | np.ndarray,
    *,
    n_classes: int | None = None,
    folds: int = 5,
    epochs: int = 12,
    seed: int = 42,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, n_classes) probabilities, each row from the fold model that did not train on it."""
    y = np.asarray(labels, dtype=int)
    n_classes = n_classes or int(y.max()) + 1

    def fit_and_score(fold: int, fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        _, keywords = stacked_scores(list(features.texts), y, fit_rows, n_classes=n_classes, seed=seed)
        model = _train_fold(features, keywords, y, fit_rows, n_classes, epochs=epochs, seed=seed + fold + 1)
        with torch.no_grad():
            logits = model(
                torch.from_numpy(features.image[score_rows]).float(),
                torch.from_numpy(features.text[score_rows]).float(),
                torch.from_numpy(features.has_image[score_rows]),
                torch.ones(len(score_rows), dtype=torch.bool),
                torch.from_numpy(keywords[score_rows]),
            )
        return torch.softmax(logits, dim=-1).numpy()

    return cross_fit(fit_and_score, stratified_folds(y, folds=folds, seed=seed), n_rows=len(y), width=n_classes, progress=progress)


def rank_label_issues(labels: Sequence[int] | np.ndarray, probabilities: np.ndarray) -> list[LabelIssue]:
    """Every item with its cleanlab label-quality score and issue flag, worst first."""
    y = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    scores = get_label_quality_scores(y, probabilities, method="self_confidence")
    flagged = np.zeros(len(y), bool)
    if len(np.unique(y)) > 1:
        flagged = find_label_issues(y, probabilities, filter_by="prune_by_noise_rate")
    order = np.argsort(scores, kind="stable")
    return [
        LabelIssue(int(row), int(y[row]), int(probabilities[row].argmax()), float(scores[row]), bool(flagged[row]), probabilities[row])
        for row in order
    ]


def catalogue_features(catalogue: Catalogue, *, cache_dir: Path, backbone_id: str = DEFAULT_BACKBONE) -> ProductFeatures:
    """The cached features of every product of a catalogue (computed for new or changed items only)."""
    products, images = catalogue.products, catalogue.images
    backbone = get_backbone(backbone_id)
    photo_features = (
        cached_image_features(backbone, images, cache_dir=cache_dir) if images else np.empty((0, backbone.feature_dim), np.float32)
    )
    image, has_image = catalogue.photo_means(photo_features)
    texts = [product.text for product in products]
    text = cached_sentence_embeddings([product.id for product in products], texts, cache_dir=cache_dir)
    return ProductFeatures(image, has_image, np.asarray(text, np.float32), texts)


def catalogue_label_issues(
    catalogue: Catalogue, *, cache_dir: Path, folds: int = 5, seed: int = 42, progress: Progress | None = None
) -> list[tuple[str, LabelIssue]]:
    """(product id, issue) for every product of the catalogue, worst label first."""
    labels = catalogue.labels
    index = {label: position for position, label in enumerate(labels)}
    y = np.array([index[product.label] for product in catalogue.products])
    features = catalogue_features(catalogue, cache_dir=cache_dir)
    probabilities = out_of_sample_probabilities(features, y, n_classes=len(labels), folds=folds, seed=seed, progress=progress)
    return [(catalogue.products[issue.index].id, issue) for issue in rank_label_issues(y, probabilities)]
