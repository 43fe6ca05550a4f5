"""Evaluating models on any catalogue in the seed format, without touching the app's database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core.classify import CategoryClassifier
from core.dataset import Catalogue
from core.evaluation import classification_metrics
from core.features import text_states

Progress = Callable[[str, int, int], None]


def evaluate_catalogue(classifier: CategoryClassifier, catalogue: Catalogue, *, progress: Progress | None = None) -> dict[str, Any]:
    """{"image": M, "text": M, "combined": M}: image per photo, text and combined per product.

    Products whose category the models do not know are left out and counted under "skipped".
    """
    label_index = {label: index for index, label in enumerate(classifier.labels)}
    products = [product for product in catalogue.products if product.label in label_index]
    skipped = len(catalogue.products) - len(products)
    known = {product.id for product in products}
    images = [image for image in catalogue.images if image.product_id in known]
    label_of = {product.id: label_index[product.label] for product in products}

    model_inputs, photo_features = classifier.photo_inputs([image.path for image in images],
                                                           progress=(lambda done, total: progress("photos", done, total)) if progress else None)
    states = torch.from_numpy(text_states([product.text for product in products], layer=classifier.text_layer, max_tokens=classifier.max_tokens,
                                          progress=(lambda done, total: progress("texts", done, total)) if progress else None))

    image_y = np.array([label_of[image.product_id] for image in images], dtype=int)
    image_probabilities = classifier.image_probabilities(model_inputs) if len(images) else np.empty((0, len(label_index)))
    product_y = np.array([label_of[product.id] for product in products], dtype=int)
    text_probabilities = _batched(classifier.text_probabilities, states)
    text_vectors = _batched(classifier.text_branch_features, states)

    rows_of: dict[str, list[int]] = {}
    for row, image in enumerate(images):
        rows_of.setdefault(image.product_id, []).append(row)
    image_mean = np.zeros((len(products), photo_features.shape[1] if len(images) else classifier.models["combined"].config["image_dim"]), np.float32)
    has_image = np.zeros(len(products), bool)
    for row, product in enumerate(products):
        if product.id in rows_of:
            image_mean[row] = photo_features[rows_of[product.id]].mean(axis=0)
            has_image[row] = True
    combined = (classifier.combined_probabilities(image_mean, has_image, text_vectors, np.ones(len(products), bool), [product.text for product in products])
                if products else np.empty((0, len(label_index))))

    labels = classifier.labels
    return {
        "image": classification_metrics(image_y, image_probabilities, labels),
        "text": classification_metrics(product_y, text_probabilities, labels),
        "combined": classification_metrics(product_y, combined, labels),
        "skipped_products_with_unknown_category": skipped,
    }


def _batched(function: Callable[[torch.Tensor], np.ndarray], states: torch.Tensor, batch_size: int = 128) -> np.ndarray:
    return np.concatenate([function(states[start : start + batch_size]) for start in range(0, len(states), batch_size)]) if len(states) else np.empty((0, 0))
