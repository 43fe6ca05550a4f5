"""Calibrated probabilities and the decisions made with them: auto-file or ask.

A model's probabilities are rescaled by temperature scaling or vector scaling (whichever predicts
the validation products better, by cross-validated log loss), fitted on half of the validation part
of the model's split. Where one factor on every logit cannot put the confidence right (a model
underconfident in the middle and overconfident at the top), a top-label map follows: the top
probability through a logistic curve of its logit (Platt scaling of "is the answer right"), kept only
when it lowers the cross-validated log loss of that question. On the same half a confidence threshold
is chosen: the lowest calibrated top probability at which the model's answers are still right at least
`target_accuracy` of the time.
The other half calibrates a split-conformal classifier (crepes, hinge score = 1 - the probability of
a class), whose prediction set is the shortest list of categories that holds the true one with
probability `confidence`. Training products never take part.

Everything here is numpy and JSON (no torch): the state travels inside the model file and the
manifest, and pages that only show stored figures apply it without loading a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# scipy, scikit-learn and crepes take over a second to import: loaded where a fit or a set needs them.

TARGET_ACCURACY = 0.95
SET_CONFIDENCE = 0.90
TEMPERATURE, VECTOR = "temperature", "vector"
# Vector scaling (two parameters a class) is chosen only when it lowers the cross-validated log loss by
# this much: on models without class bias the two differ by up to 0.003 nats either way (noise).
VECTOR_MARGIN = 0.005
# The top-label map (two parameters) likewise, by this much: between samples of a few hundred validation
# products its cross-validated gain varies by about 0.002 nats on models that do not need it.
CONFIDENCE_MAP_MARGIN = 0.002
_FLOOR = 1e-12


def _logits(probabilities: np.ndarray) -> np.ndarray:
    """Log-probabilities: the model's logits up to a constant per row, which softmax ignores."""
    return np.log(np.clip(np.asarray(probabilities, np.float64), _FLOOR, 1.0))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(y)), y].mean())


@dataclass(frozen=True)
class Scaling:
    """z -> scale * z + bias on a model's logits: temperature scaling has one scale (1/T) and no bias,
    vector scaling a scale and a bias per class."""

    method: str
    scale: tuple[float, ...]
    bias: tuple[float, ...]

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(probabilities, np.float64)
        if not len(probabilities):
            return probabilities
        return softmax(_logits(probabilities) * np.asarray(self.scale) + np.asarray(self.bias))

    @property
    def temperature(self) -> float | None:
        return 1.0 / self.scale[0] if self.method == TEMPERATURE else None


def fit_scaling(probabilities: np.ndarray, y: np.ndarray, *, method: str) -> Scaling:
    """The scaling of `method` that minimises the log loss of (probabilities, y)."""
    from scipy.optimize import minimize, minimize_scalar

    logits, y = _logits(probabilities), np.asarray(y)
    if method == TEMPERATURE:
        fitted = minimize_scalar(lambda log_scale: _log_loss(logits * np.exp(log_scale), y), bounds=(-4.0, 4.0), method="bounded")
        return Scaling(TEMPERATURE, (float(np.exp(fitted.x)),), (0.0,))
    n_classes = logits.shape[1]
    one_hot = np.eye(n_classes)[y]

    def loss_and_gradient(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        scale, bias = parameters[:n_classes], parameters[n_classes:]
        scaled = logits * scale + bias
        error = (softmax(scaled) - one_hot) / len(y)
        return _log_loss(scaled, y), np.concatenate([(error * logits).sum(axis=0), error.sum(axis=0)])

    start = np.concatenate([np.ones(n_classes), np.zeros(n_classes)])
    fitted = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B")
    return Scaling(VECTOR, tuple(float(value) for value in fitted.x[:n_classes]), tuple(float(value) for value in fitted.x[n_classes:]))


def choose_scaling(probabilities: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0) -> tuple[str, dict[str, float]]:
    """TEMPERATURE or VECTOR, whichever has the lower log loss on held-out folds of (probabilities, y)
    (vector scaling by VECTOR_MARGIN), with each method's cross-validated log loss."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    smallest_class = int(np.bincount(y).min()) if len(y) else 0
    if len(y) < 2 * folds or smallest_class < 2:  # too few to compare: the one-parameter scaling
        return TEMPERATURE, {}
    splitter = StratifiedKFold(n_splits=min(folds, smallest_class), shuffle=True, random_state=seed)
    losses = {}
    for method in (TEMPERATURE, VECTOR):
        held_out_loss = 0.0
        for fit_rows, score_rows in splitter.split(probabilities, y):
            scaling = fit_scaling(probabilities[fit_rows], y[fit_rows], method=method)
            held_out_loss += _log_loss(_logits(scaling.apply(probabilities[score_rows])), y[score_rows]) * len(score_rows)
        losses[method] = held_out_loss / len(y)
    return (VECTOR if losses[VECTOR] < losses[TEMPERATURE] - VECTOR_MARGIN else TEMPERATURE), losses


def _binary_log_loss(confidence: np.ndarray, correct: np.ndarray) -> float:
    confidence = np.clip(confidence, 1e-6, 1 - 1e-6)
    return float(-np.mean(np.where(correct, np.log(confidence), np.log1p(-confidence))))


def _logit(probability: np.ndarray) -> np.ndarray:
    from scipy.special import logit

    return np.asarray(logit(np.clip(np.asarray(probability, np.float64), 1e-6, 1 - 1e-6)))


def _sigmoid(value: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return np.asarray(expit(value))


@dataclass(frozen=True)
class ConfidenceMap:
    """Top-label Platt scaling: the top probability p becomes sigmoid(slope * logit(p) + intercept) and
    the other classes share the rest in their old proportions. The answer never changes: the new top
    probability is kept at least as high as the runner-up's new one."""

    slope: float
    intercept: float

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(probabilities, np.float64)
        if not len(probabilities):
            return probabilities
        rows = np.arange(len(probabilities))
        top = probabilities.argmax(axis=1)
        ordered = np.sort(probabilities, axis=1)
        first, second = ordered[:, -1], ordered[:, -2]
        mapped = _sigmoid(self.slope * _logit(first) + self.intercept)
        mapped = np.maximum(mapped, second / np.maximum(1.0 - first + second, _FLOOR))  # the runner-up stays below
        rest = np.maximum(1.0 - first, _FLOOR)
        result = probabilities * ((1.0 - mapped) / rest)[:, None]
        result[rows, top] = mapped
        return result


def fit_confidence_map(probabilities: np.ndarray, y: np.ndarray) -> ConfidenceMap:
    """The ConfidenceMap that minimises the log loss of "the top class is right" on (probabilities, y)."""
    from scipy.optimize import minimize

    probabilities = np.asarray(probabilities, np.float64)
    features = _logit(probabilities.max(axis=1))
    correct = (probabilities.argmax(axis=1) == np.asarray(y)).astype(np.float64)

    def loss_and_gradient(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        confidence = _sigmoid(parameters[0] * features + parameters[1])
        error = (confidence - correct) / len(correct)
        return _binary_log_loss(confidence, correct.astype(bool)), np.array([(error * features).sum(), error.sum()])

    fitted = minimize(loss_and_gradient, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return ConfidenceMap(float(fitted.x[0]), float(fitted.x[1]))


def choose_confidence_map(
    probabilities: np.ndarray, y: np.ndarray, *, method: str, folds: int = 5, repeats: int = 3, seed: int = 0
) -> tuple[bool, dict[str, float]]:
    """Whether a top-label map after the scaling of `method` lowers the log loss of "the top class is right"
    on held-out folds by CONFIDENCE_MAP_MARGIN (the scaling refitted on each fold's other rows, both ways
    alike; the folds drawn `repeats` times, as one draw is noisy); with both losses."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    probabilities, y = np.asarray(probabilities, np.float64), np.asarray(y)
    correct = probabilities.argmax(axis=1) == y
    if len(y) < 2 * folds or min(correct.sum(), (~correct).sum()) < folds:  # too few of either to fit a curve on
        return False, {}
    totals = {"without": 0.0, "with": 0.0}
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    for fit_rows, score_rows in splitter.split(probabilities, correct):
        scaling = fit_scaling(probabilities[fit_rows], y[fit_rows], method=method)
        scaled_fit, scaled_score = scaling.apply(probabilities[fit_rows]), scaling.apply(probabilities[score_rows])
        right = scaled_score.argmax(axis=1) == y[score_rows]
        mapped = fit_confidence_map(scaled_fit, y[fit_rows]).apply(scaled_score)
        totals["without"] += _binary_log_loss(scaled_score.max(axis=1), right) * len(score_rows)
        totals["with"] += _binary_log_loss(mapped.max(axis=1), right) * len(score_rows)
    losses = {way: total / (len(y) * repeats) for way, total in totals.items()}
    return losses["with"] < losses["without"] - CONFIDENCE_MAP_MARGIN, losses


def _mapped(scaled: np.ndarray, confidence_map: ConfidenceMap | None) -> np.ndarray:
    return scaled if confidence_map is None else confidence_map.apply(scaled)


def accuracy_by_confidence(probabilities: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top probabilities, most confident first; the accuracy of the i+1 most confident answers at i)."""
    probabilities = np.asarray(probabilities, float)
    order = np.argsort(-probabilities.max(axis=1), kind="stable")
    correct = (probabilities.argmax(axis=1) == np.asarray(y))[order]
    return probabilities.max(axis=1)[order], np.cumsum(correct) / np.arange(1, len(order) + 1)


def confidence_threshold(probabilities: np.ndarray, y: np.ndarray, *, target_accuracy: float = TARGET_ACCURACY) -> float:
    """The lowest top probability above which the answers are right at least `target_accuracy` of the
    time: the most listings filed automatically at that accuracy. 1.0 (nothing filed) if none reach it."""
    top, running_accuracy = accuracy_by_confidence(probabilities, y)
    meets = np.flatnonzero(running_accuracy >= target_accuracy)
    if not len(meets):
        return 1.0
    return float(top[meets[-1]])


@dataclass(frozen=True)
class Calibration:
    """A model's calibration (scaling, then the top-label map if one was kept), threshold and conformal
    classifier (the calibration half's hinge scores)."""

    scaling: Scaling
    threshold: float
    conformal_scores: tuple[float, ...]
    target_accuracy: float = TARGET_ACCURACY
    set_confidence: float = SET_CONFIDENCE
    fitted_on: dict[str, Any] = field(default_factory=dict)  # products, log losses: what the choice was made on
    confidence_map: ConfidenceMap | None = None

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        return _mapped(self.scaling.apply(raw), self.confidence_map)

    def is_confident(self, probabilities: np.ndarray) -> np.ndarray:
        """Per row of calibrated probabilities: filed automatically (True) or asked about."""
        return np.asarray(probabilities).max(axis=-1) >= self.threshold

    def prediction_sets(self, probabilities: np.ndarray) -> np.ndarray:
        """Per row of calibrated probabilities, a boolean mask over the classes: the conformal set, never
        empty (a row no class reaches gets its top class: coverage can only rise)."""
        from crepes import ConformalClassifier
        from crepes.extras import hinge

        probabilities = np.atleast_2d(np.asarray(probabilities, np.float64))
        conformal = ConformalClassifier()
        conformal.fit(np.asarray(self.conformal_scores))
        members = conformal.predict_set(hinge(probabilities), confidence=self.set_confidence, smoothing=False).astype(bool)
        members[np.arange(len(probabilities)), probabilities.argmax(axis=1)] |= ~members.any(axis=1)
        return members

    def to_state(self) -> dict[str, Any]:
        return {
            "method": self.scaling.method,
            "scale": list(self.scaling.scale),
            "bias": list(self.scaling.bias),
            "threshold": self.threshold,
            "target_accuracy": self.target_accuracy,
            "conformal_scores": [round(score, 6) for score in self.conformal_scores],
            "set_confidence": self.set_confidence,
            "fitted_on": self.fitted_on,
            "confidence_map": self.confidence_map_state,
        }

    @property
    def confidence_map_state(self) -> dict[str, float] | None:
        return None if self.confidence_map is None else {"slope": self.confidence_map.slope, "intercept": self.confidence_map.intercept}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Calibration:
        return cls(
            Scaling(str(state["method"]), tuple(state["scale"]), tuple(state["bias"])),
            float(state["threshold"]),
            tuple(float(score) for score in state["conformal_scores"]),
            float(state["target_accuracy"]),
            float(state["set_confidence"]),
            dict(state.get("fitted_on", {})),
            ConfidenceMap(float(mapping["slope"]), float(mapping["intercept"])) if (mapping := state.get("confidence_map")) else None,
        )


def fit_calibration(
    probabilities: np.ndarray,
    y: np.ndarray,
    *,
    target_accuracy: float = TARGET_ACCURACY,
    set_confidence: float = SET_CONFIDENCE,
    seed: int = 0,
) -> Calibration:
    """From a model's raw probabilities on its validation products (never training ones): half chooses
    and fits the scaling, the top-label map and the threshold, the other half calibrates the prediction sets."""
    from crepes.extras import hinge
    from sklearn.model_selection import train_test_split

    probabilities, y = np.asarray(probabilities, np.float64), np.asarray(y)
    rows = np.arange(len(y))
    stratify = y if np.bincount(y).min() >= 2 else None
    fit_rows, conformal_rows = train_test_split(rows, test_size=0.5, random_state=seed, stratify=stratify)
    # Chosen on the half they are fitted on: folds of all the validation products would be larger than that
    # half, which favours the methods with more parameters.
    method, losses = choose_scaling(probabilities[fit_rows], y[fit_rows], seed=seed)
    scaling = fit_scaling(probabilities[fit_rows], y[fit_rows], method=method)
    scaled_fit = scaling.apply(probabilities[fit_rows])
    keep_map, map_losses = choose_confidence_map(probabilities[fit_rows], y[fit_rows], method=method, seed=seed)
    confidence_map = fit_confidence_map(scaled_fit, y[fit_rows]) if keep_map else None
    calibrated_fit = _mapped(scaled_fit, confidence_map)
    calibrated_conformal = _mapped(scaling.apply(probabilities[conformal_rows]), confidence_map)
    return Calibration(
        scaling,
        confidence_threshold(calibrated_fit, y[fit_rows], target_accuracy=target_accuracy),
        tuple(float(score) for score in hinge(calibrated_conformal, np.arange(probabilities.shape[1]), y[conformal_rows])),
        target_accuracy,
        set_confidence,
        {
            "scaling_and_threshold": len(fit_rows),
            "prediction_sets": len(conformal_rows),
            "cross_validated_log_loss": losses,
            "top_label_cross_validated_log_loss": map_losses,
        },
        confidence_map,
    )
