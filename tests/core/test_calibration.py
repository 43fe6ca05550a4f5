"""Calibration, confidence thresholds and prediction sets on synthetic predictions whose true
calibration is known: an overconfident model is cooled, a class-biased one gets vector scaling, one
whose top probabilities are bent out of shape gets the top-label map, the
threshold reaches its accuracy on new items, and the prediction sets hold the true class as often as
promised."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.evaluation.reliability import ece_sampling_floor, expected_calibration_error, reliability_bins, selective_accuracy, trust_figures
from core.inference.calibration import (
    TEMPERATURE,
    VECTOR,
    Calibration,
    ConfidenceMap,
    choose_scaling,
    confidence_threshold,
    fit_calibration,
    fit_scaling,
)

N_CLASSES = 8


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _sample(
    n: int, *, seed: int, sharpen: float = 1.0, bias: np.ndarray | None = None, spread: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Items whose labels are drawn from softmax(true logits): the model reports softmax(sharpen * logits + bias)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, spread, (n, N_CLASSES))
    truth = _softmax(logits)
    y = np.array([rng.choice(N_CLASSES, p=row) for row in truth])
    reported = sharpen * logits + (0 if bias is None else bias)
    return _softmax(reported), y


def test_temperature_scaling_cools_an_overconfident_model() -> None:
    probabilities, y = _sample(4000, seed=0, sharpen=2.0)
    scaling = fit_scaling(probabilities, y, method=TEMPERATURE)
    assert scaling.temperature == pytest.approx(2.0, rel=0.1)
    fresh, fresh_y = _sample(4000, seed=1, sharpen=2.0)
    before = expected_calibration_error(fresh, fresh_y)
    after = expected_calibration_error(scaling.apply(fresh), fresh_y)
    assert before is not None and after is not None and before > 0.08 and after < 0.025
    assert (scaling.apply(fresh).argmax(axis=1) == fresh.argmax(axis=1)).all()  # a temperature never changes the answer


def test_vector_scaling_is_chosen_when_classes_are_biased_and_temperature_when_not() -> None:
    bias = np.linspace(-1.5, 1.5, N_CLASSES)
    biased, y = _sample(3000, seed=2, bias=bias)
    method, losses = choose_scaling(biased, y)
    assert method == VECTOR and losses[VECTOR] < losses[TEMPERATURE]
    scaling = fit_scaling(biased, y, method=VECTOR)
    assert np.allclose(np.asarray(scaling.bias) - np.mean(scaling.bias), -(bias - bias.mean()), atol=0.25)
    plain, plain_y = _sample(3000, seed=3, sharpen=1.5)
    assert choose_scaling(plain, plain_y)[0] == TEMPERATURE
    assert fit_calibration(biased, y).scaling.method == VECTOR


def test_the_top_label_map_mends_what_one_temperature_cannot_and_is_left_out_where_it_is_not_needed() -> None:
    # Calibrated items whose top probabilities are squeezed towards 0.75: too sure of hard items, too shy on easy ones.
    squeeze = ConfidenceMap(slope=0.5, intercept=1.0)
    probabilities, y = _sample(4000, seed=12)
    calibration = fit_calibration(squeeze.apply(probabilities), y)
    assert calibration.confidence_map is not None and calibration.confidence_map.slope > 1.5  # it stretches them out again
    losses = calibration.fitted_on["top_label_cross_validated_log_loss"]
    assert losses["with"] < losses["without"]
    fresh, fresh_y = _sample(4000, seed=13)
    bent = squeeze.apply(fresh)
    temperature_only = fit_scaling(bent, fresh_y, method=TEMPERATURE).apply(bent)  # even fitted on these very items
    after = calibration.probabilities(bent)
    assert expected_calibration_error(after, fresh_y) < expected_calibration_error(temperature_only, fresh_y) / 2
    assert (after.argmax(axis=1) == fresh.argmax(axis=1)).all() and np.allclose(after.sum(axis=1), 1.0)
    assert fit_calibration(*_sample(4000, seed=14, sharpen=2.0)).confidence_map is None  # a temperature is all this one needs


def test_the_threshold_gives_its_accuracy_on_new_items() -> None:
    probabilities, y = _sample(6000, seed=4, spread=4.0)
    threshold = confidence_threshold(probabilities, y, target_accuracy=0.95)
    kept = probabilities.max(axis=1) >= threshold
    assert (probabilities.argmax(axis=1) == y)[kept].mean() >= 0.95
    fresh, fresh_y = _sample(6000, seed=5, spread=4.0)
    fresh_kept = fresh.max(axis=1) >= threshold
    assert 0.2 < fresh_kept.mean() < 0.9  # a real share, neither everything nor nothing
    assert (fresh.argmax(axis=1) == fresh_y)[fresh_kept].mean() == pytest.approx(0.95, abs=0.015)
    assert confidence_threshold(np.full((10, 2), 0.5), np.ones(10, int), target_accuracy=0.99) == 1.0  # never: nothing filed


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95])
def test_prediction_sets_hold_the_true_class_as_often_as_promised(confidence: float) -> None:
    probabilities, y = _sample(4000, seed=6, sharpen=1.6)
    calibration = fit_calibration(probabilities, y, set_confidence=confidence)
    fresh, fresh_y = _sample(20000, seed=7, sharpen=1.6)
    members = calibration.prediction_sets(calibration.probabilities(fresh))
    assert members.any(axis=1).all()
    assert members[np.arange(len(fresh_y)), fresh_y].mean() == pytest.approx(confidence, abs=0.015)
    assert 1 < members.sum(axis=1).mean() < N_CLASSES  # shorter lists than "any category"


def test_a_better_model_gets_shorter_sets() -> None:
    def mean_size(spread: float) -> float:
        rng = np.random.default_rng(8)
        y = rng.integers(0, N_CLASSES, 6000)
        logits = rng.normal(0, 1, (6000, N_CLASSES))
        logits[np.arange(6000), y] += spread  # how far the model separates the true class
        probabilities = _softmax(logits)
        calibration = fit_calibration(probabilities[:3000], y[:3000])
        return float(calibration.prediction_sets(calibration.probabilities(probabilities[3000:])).sum(axis=1).mean())

    assert mean_size(4.0) < mean_size(2.0) < mean_size(0.5)


def test_a_calibration_travels_as_json_and_decides_the_same() -> None:
    probabilities, y = _sample(2000, seed=9, sharpen=1.8)
    calibration = fit_calibration(probabilities, y)
    again = Calibration.from_state(json.loads(json.dumps(calibration.to_state())))
    fresh, _ = _sample(500, seed=10, sharpen=1.8)
    assert np.allclose(again.probabilities(fresh), calibration.probabilities(fresh), atol=1e-6)
    assert (again.prediction_sets(again.probabilities(fresh)) == calibration.prediction_sets(calibration.probabilities(fresh))).all()
    assert again.threshold == calibration.threshold
    mapped = Calibration(calibration.scaling, 0.9, calibration.conformal_scores, confidence_map=ConfidenceMap(1.5, -0.2))
    assert np.allclose(Calibration.from_state(json.loads(json.dumps(mapped.to_state()))).probabilities(fresh), mapped.probabilities(fresh))
    older = {key: value for key, value in calibration.to_state().items() if key != "confidence_map"}  # files calibrated before the map
    assert np.allclose(Calibration.from_state(older).probabilities(fresh), calibration.probabilities(fresh))
    assert calibration.fitted_on["scaling_and_threshold"] + calibration.fitted_on["prediction_sets"] == 2000


def test_reliability_figures_on_a_worked_example() -> None:
    # Four items at 0.9 confidence (3 right), two at 0.6 (both right).
    probabilities = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    y = np.array([0, 0, 0, 1, 0, 0])
    bins = reliability_bins(probabilities, y, bins=10)
    assert [(row["count"], row["accuracy"]) for row in bins] == [(2, 1.0), (4, 0.75)]
    assert expected_calibration_error(probabilities, y, bins=10) == pytest.approx((2 * 0.4 + 4 * 0.15) / 6)
    coverage = selective_accuracy(probabilities, y, target_accuracy=0.75)
    assert coverage["accuracy_at_coverage"] == {"0.5": 1.0, "0.7": 0.75, "0.9": 0.8}  # the top 3, 4 and 5 by confidence
    assert coverage["coverage_at_accuracy"] == 1.0  # all six: 5 of 6 right
    assert expected_calibration_error(np.empty((0, 2)), np.empty(0, int)) is None


def test_trust_figures_report_before_and_after_and_the_decisions() -> None:
    raw, y = _sample(8000, seed=11, sharpen=2.0, spread=4.0)
    calibration = fit_calibration(raw[:4000], y[:4000])
    figures = trust_figures(calibration.probabilities(raw[4000:]), y[4000:], uncalibrated=raw[4000:], calibration=calibration)
    assert figures["ece"] < figures["ece_uncalibrated"]
    assert figures["prediction_sets"]["coverage"] == pytest.approx(0.9, abs=0.04)
    assert figures["confident"]["accuracy"] == pytest.approx(0.95, abs=0.02) and 0.2 < figures["confident"]["share"] < 0.9
    assert set(figures["coverage"]["accuracy_at_coverage"]) == {"0.5", "0.7", "0.9"}


def test_ece_floor_is_what_a_perfectly_calibrated_model_shows_on_that_many_items() -> None:
    """Binned ECE is biased upwards on small sets: a calibrated model's ECE over 1,000 items sits at the
    floor (averaged over sets), the floor shrinks as items are added, and an overconfident model stands above it."""
    measured, floors = [], []
    for seed in range(20):
        probabilities, y = _sample(1000, seed=seed)
        measured.append(expected_calibration_error(probabilities, y))
        floors.append(ece_sampling_floor(probabilities, draws=50, seed=seed))
    assert np.mean(floors) == pytest.approx(np.mean(measured), rel=0.15) and np.mean(floors) > 0.015
    large, _ = _sample(16000, seed=0)
    assert ece_sampling_floor(large, draws=20) < np.mean(floors) / 2  # about 1 / sqrt(items)
    overconfident, y = _sample(1000, seed=0, sharpen=2.0)
    assert expected_calibration_error(overconfident, y) > 3 * ece_sampling_floor(overconfident, draws=50)
    assert ece_sampling_floor(np.empty((0, 3))) is None
    assert "ece_floor" in trust_figures(*_sample(200, seed=3))
