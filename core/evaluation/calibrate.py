"""Calibrating a folder of models on the validation part of their split (core.inference.calibration):
each model's calibration goes into its file and its summary into the manifest, checksums renewed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data.catalogue import Catalogue
from core.data.splits import VALIDATION
from core.evaluation.catalogue import predict_catalogue, split_part
from core.inference.calibration import SET_CONFIDENCE, TARGET_ACCURACY, Calibration, fit_calibration
from core.inference.category_classifier import CategoryClassifier
from core.models.checkpoints import update_checkpoint_info
from core.models.manifest import file_sha256, read_manifest, write_manifest
from core.runtime.progress import StageProgress


def calibrate_models(
    models_dir: Path,
    catalogue: Catalogue,
    *,
    cache_dir: Path,
    target_accuracy: float = TARGET_ACCURACY,
    set_confidence: float = SET_CONFIDENCE,
    progress: StageProgress | None = None,
) -> dict[str, Calibration]:
    """Fit every model's calibration on its validation products (the image model per photo), store it."""
    classifier = CategoryClassifier(models_dir)
    validation = split_part(classifier, catalogue, VALIDATION)
    if not validation.products:
        raise ValueError("the catalogue has no validation products for these models: nothing to calibrate on")
    predictions = predict_catalogue(classifier, validation, cache_dir=cache_dir, progress=progress, part=VALIDATION)
    calibrations: dict[str, Calibration] = {}
    manifest = read_manifest(models_dir)
    for kind, prediction in predictions.items():
        raw = prediction.uncalibrated if prediction.uncalibrated is not None else prediction.probabilities
        calibration = fit_calibration(
            raw, prediction.frame["true"].to_numpy(), target_accuracy=target_accuracy, set_confidence=set_confidence
        )
        calibrations[kind] = calibration
        path = models_dir / f"{kind}.pt"
        update_checkpoint_info(path, calibration=calibration.to_state())
        entry = manifest["models"].setdefault(kind, {"file": path.name})
        entry.update(sha256=file_sha256(path), bytes=path.stat().st_size, calibration=calibration_summary(calibration))
    write_manifest(models_dir, manifest)
    return calibrations


def calibration_summary(calibration: Calibration) -> dict[str, Any]:
    """What the manifest shows of a calibration (the model file holds all of it)."""
    return {
        "method": calibration.scaling.method,
        "temperature": calibration.scaling.temperature,
        "confidence_map": calibration.confidence_map_state,
        "threshold": round(calibration.threshold, 6),
        "target_accuracy": calibration.target_accuracy,
        "set_confidence": calibration.set_confidence,
        "fitted_on": calibration.fitted_on,
    }
