"""Evaluating models on a catalogue: any folder in the seed format (without touching the app's
database), or the app's own catalogue on the held-out test part of the models' split."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data.catalogue import Catalogue, ImageRecord, ProductRecord
from core.data.splits import TEST, split_products
from core.encoders.features import cached_image_features, cached_text_states, text_states
from core.evaluation.metrics import PredictionSet
from core.inference.category_classifier import CategoryClassifier
from core.runtime.progress import StageProgress, for_stage


def predict_catalogue(
    classifier: CategoryClassifier,
    catalogue: Catalogue,
    *,
    cache_dir: Path | None = None,
    progress: StageProgress | None = None,
    part: str = "all",
    problems: list[str] | None = None,
) -> dict[str, PredictionSet]:
    """Predictions of the image (per photo), text and combined (per product) models.

    Products whose category the models do not know are left out. With `cache_dir`, encoder
    outputs come from the feature cache (the photos need checksums, as the app's catalogue has).
    Without it, photos that cannot be read are left out with their reasons in `problems` (given)
    or raise ImageError (not given).
    """
    label_index = {label: index for index, label in enumerate(classifier.labels)}
    products = [product for product in catalogue.products if product.label in label_index]
    known = {product.id for product in products}
    images, model_inputs, photo_features = _photo_inputs(
        classifier,
        [image for image in catalogue.images if image.product_id in known],
        cache_dir=cache_dir,
        progress=progress,
        problems=problems,
    )
    texts = [product.text for product in products]
    states = _text_states(classifier, [product.id for product in products], texts, cache_dir=cache_dir, progress=progress)

    n_labels = len(label_index)
    image_probabilities = classifier.image_probabilities(model_inputs) if images else np.empty((0, n_labels))
    text_probabilities, text_vectors = classifier.text_outputs(states)
    image_mean, has_image = Catalogue(products, images).photo_means(photo_features)
    combined = (
        classifier.combined_probabilities(image_mean, has_image, text_vectors, np.ones(len(products), bool), texts)
        if products
        else np.empty((0, n_labels))
    )

    return _prediction_sets(
        classifier, products, images, raw={"image": image_probabilities, "text": text_probabilities, "combined": combined}, part=part
    )


def _prediction_sets(
    classifier: CategoryClassifier, products: list[ProductRecord], images: list[ImageRecord], *, raw: dict[str, np.ndarray], part: str
) -> dict[str, PredictionSet]:
    """The image model's probabilities per photo, the text and combined models' per product, with their
    true labels: calibrated (with the raw ones kept beside) where the model has a calibration."""
    labels = classifier.labels
    label_index = {label: index for index, label in enumerate(labels)}
    product_ids = [product.id for product in products]
    product_y = [label_index[product.label] for product in products]
    label_of = dict(zip(product_ids, product_y))
    per_photo = PredictionSet.from_arrays(
        "image model",
        "image",
        labels,
        item_ids=[image.id for image in images],
        product_ids=[image.product_id for image in images],
        y_true=[label_of[image.product_id] for image in images],
        probabilities=classifier.calibrated("image", raw["image"]),
        part=part,
        uncalibrated=raw["image"],
        calibration=classifier.calibrations.get("image"),
    )
    per_product = {
        kind: PredictionSet.from_arrays(
            f"{kind} model",
            kind,
            labels,
            item_ids=product_ids,
            product_ids=product_ids,
            y_true=product_y,
            probabilities=classifier.calibrated(kind, raw[kind]),
            part=part,
            uncalibrated=raw[kind],
            calibration=classifier.calibrations.get(kind),
        )
        for kind in ("text", "combined")
    }
    return {"image": per_photo, **per_product}


def _photo_inputs(
    classifier: CategoryClassifier,
    images: list[ImageRecord],
    *,
    cache_dir: Path | None,
    progress: StageProgress | None,
    problems: list[str] | None,
) -> tuple[list[ImageRecord], np.ndarray, np.ndarray]:
    """The photos that could be read, the image model's inputs and the pooled photo features."""
    if cache_dir is not None and not classifier.tail_blocks and images:
        photo_features = cached_image_features(classifier.backbone, images, cache_dir=cache_dir, progress=for_stage(progress, "photos"))
        return images, photo_features, photo_features
    model_inputs, photo_features = classifier.photo_inputs(
        [image.path for image in images], progress=for_stage(progress, "photos"), problems=problems
    )
    readable = ~np.isnan(photo_features.reshape(len(images), -1)).any(axis=1) if len(images) else np.ones(0, bool)
    if readable.all():
        return images, model_inputs, photo_features
    return [image for image, keep in zip(images, readable) if keep], model_inputs[readable], photo_features[readable]


def _text_states(
    classifier: CategoryClassifier, product_ids: list[str], texts: list[str], *, cache_dir: Path | None, progress: StageProgress | None
) -> torch.Tensor:
    """The token states the text model reads: from the feature cache when there is one."""
    if cache_dir is not None and product_ids:
        states = cached_text_states(
            product_ids,
            texts,
            layer=classifier.text_layer,
            max_tokens=classifier.max_tokens,
            cache_dir=cache_dir,
            progress=for_stage(progress, "texts"),
        )
    else:
        states = text_states(texts, layer=classifier.text_layer, max_tokens=classifier.max_tokens, progress=for_stage(progress, "texts"))
    return torch.from_numpy(states)


def evaluate_catalogue(classifier: CategoryClassifier, catalogue: Catalogue, *, progress: StageProgress | None = None) -> dict[str, Any]:
    """{"image": M, "text": M, "combined": M}: image per photo, text and combined per product."""
    problems: list[str] = []
    predictions = predict_catalogue(classifier, catalogue, progress=progress, problems=problems)
    known = set(classifier.labels)
    return {
        **{kind: prediction.metrics() for kind, prediction in predictions.items()},
        "skipped_products_with_unknown_category": sum(product.label not in known for product in catalogue.products),
        "skipped_photos": problems,
    }


def split_part(classifier: CategoryClassifier, catalogue: Catalogue, part: str) -> Catalogue:
    """One part (validation or test) of the split the models were trained with, recomputed from their seed and fractions."""
    hyper = classifier.models["combined"].info.get("hyperparameters", {})
    split = split_products(
        [product.id for product in catalogue.products],
        [product.label for product in catalogue.products],
        test_fraction=float(hyper.get("test_fraction", 0.2)),
        val_fraction=float(hyper.get("val_fraction", 0.2)),
        seed=int(hyper.get("seed", 42)),
    )
    return catalogue.restricted_to([product_id for product_id, product_part in split.items() if product_part == part])


def held_out_predictions(
    classifier: CategoryClassifier, catalogue: Catalogue, *, cache_dir: Path, progress: StageProgress | None = None
) -> dict[str, PredictionSet]:
    """The active models on the test part of the split they were trained with. On the catalogue they
    were trained on, these products influenced neither training nor model selection; on a changed
    catalogue the note says so."""
    held_out = split_part(classifier, catalogue, TEST)
    trained_on = {model.info.get("data_fingerprint") for model in classifier.models.values()}
    note = (
        "held-out test products of the catalogue the models were trained on"
        if trained_on == {catalogue.fingerprint()}
        else "the catalogue has changed since these models were trained (labels reviewed or items added): the test part is "
        "recomputed with the same seed, and some of its products may have been on the training side"
    )
    predictions = predict_catalogue(classifier, held_out, cache_dir=cache_dir, progress=progress, part=TEST)
    return {kind: replace(prediction, name=f"active {kind} model", note=note) for kind, prediction in predictions.items()}
