"""How far a model's probabilities can be trusted: expected calibration error, the reliability diagram's
bins, accuracy when only the most confident answers are kept, and the prediction sets' coverage.
numpy only: these figures are stored with the models and drawn without loading them."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.inference.calibration import Calibration, accuracy_by_confidence

ECE_BINS = 15
COVERAGES = (0.5, 0.7, 0.9)
FLOOR_DRAWS = 200


def reliability_bins(probabilities: np.ndarray, y: np.ndarray, *, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Equal-width bins of the top probability: per non-empty bin its mean confidence, its accuracy and its count."""
    probabilities, y = np.asarray(probabilities, float), np.asarray(y, int)
    if not len(y):
        return []
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    which = np.clip((confidence * bins).astype(int), 0, bins - 1)  # a top probability of 1.0 joins the last bin
    return [
        {
            "lower": index / bins,
            "upper": (index + 1) / bins,
            "confidence": float(confidence[which == index].mean()),
            "accuracy": float(correct[which == index].mean()),
            "count": int((which == index).sum()),
        }
        for index in range(bins)
        if (which == index).any()
    ]


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, *, bins: int = ECE_BINS) -> float | None:
    """The count-weighted mean gap between confidence and accuracy over the reliability bins (top label)."""
    table = reliability_bins(probabilities, y, bins=bins)
    total = sum(row["count"] for row in table)
    if not total:
        return None
    return float(sum(row["count"] * abs(row["confidence"] - row["accuracy"]) for row in table) / total)


def ece_sampling_floor(probabilities: np.ndarray, *, bins: int = ECE_BINS, draws: int = FLOOR_DRAWS, seed: int = 0) -> float | None:
    """The ECE that sampling alone gives these many items if the probabilities were perfectly calibrated:
    the mean ECE over `draws` sets of labels drawn from the probabilities themselves. Binned ECE is biased
    upwards on small sets (each bin's accuracy is a noisy estimate), so a measured ECE near this floor
    cannot be told apart from perfect calibration on this set."""
    probabilities = np.asarray(probabilities, float)
    if not len(probabilities):
        return None
    generator = np.random.default_rng(seed)
    cumulative = np.cumsum(probabilities / probabilities.sum(axis=1, keepdims=True), axis=1)
    floors = []
    for _ in range(draws):
        labels = np.minimum((generator.random((len(probabilities), 1)) > cumulative).sum(axis=1), probabilities.shape[1] - 1)
        floors.append(expected_calibration_error(probabilities, labels, bins=bins))
    return float(np.mean([floor for floor in floors if floor is not None]))


def selective_accuracy(probabilities: np.ndarray, y: np.ndarray, *, target_accuracy: float = 0.95) -> dict[str, Any]:
    """Accuracy on the most confident 50/70/90% of the items, and the largest share answered at `target_accuracy`."""
    probabilities, y = np.asarray(probabilities, float), np.asarray(y, int)
    if not len(y):
        return {"accuracy_at_coverage": {}, "coverage_at_accuracy": None, "target_accuracy": target_accuracy}
    _, running = accuracy_by_confidence(probabilities, y)
    meets = np.flatnonzero(running >= target_accuracy)
    return {
        "accuracy_at_coverage": {f"{share:.1f}": float(running[max(0, int(round(share * len(y))) - 1)]) for share in COVERAGES},
        "coverage_at_accuracy": float((meets[-1] + 1) / len(y)) if len(meets) else 0.0,
        "target_accuracy": target_accuracy,
    }


def decision_figures(probabilities: np.ndarray, y: np.ndarray, calibration: Calibration) -> dict[str, Any]:
    """With the model's own threshold and prediction sets: the share filed automatically and its accuracy,
    and the sets' empirical coverage and mean size."""
    probabilities, y = np.asarray(probabilities, float), np.asarray(y, int)
    if not len(y):
        return {}
    confident = calibration.is_confident(probabilities)
    correct = probabilities.argmax(axis=1) == y
    members = calibration.prediction_sets(probabilities)
    return {
        "confident": {
            "threshold": calibration.threshold,
            "share": float(confident.mean()),
            "accuracy": float(correct[confident].mean()) if confident.any() else None,
        },
        "prediction_sets": {
            "confidence": calibration.set_confidence,
            "coverage": float(members[np.arange(len(y)), y].mean()),
            "mean_size": float(members.sum(axis=1).mean()),
        },
    }


def trust_figures(
    probabilities: np.ndarray, y: np.ndarray, *, uncalibrated: np.ndarray | None = None, calibration: Calibration | None = None
) -> dict[str, Any]:
    """Everything above for one model's predictions (`evaluate --out` and the stored held-out figures)."""
    figures: dict[str, Any] = {
        "ece": expected_calibration_error(probabilities, y),
        "ece_floor": ece_sampling_floor(probabilities),
        "reliability": reliability_bins(probabilities, y),
        "coverage": selective_accuracy(probabilities, y),
    }
    if uncalibrated is not None:
        figures["ece_uncalibrated"] = expected_calibration_error(uncalibrated, y)
        figures["reliability_uncalibrated"] = reliability_bins(uncalibrated, y)
    if calibration is not None:
        figures.update(decision_figures(probabilities, y, calibration))
    return figures
