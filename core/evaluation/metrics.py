"""Classification metrics from scikit-learn, in the JSON shape the CLI and the app use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.evaluation.reliability import trust_figures

if TYPE_CHECKING:
    from core.inference.calibration import Calibration


def classification_metrics(y_true: Sequence[int], probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, object]:
    """accuracy, top-3 accuracy, macro-F1, n, labels, confusion matrix (rows = true) and per-class scores."""
    # scikit-learn takes over a second to import: pages showing stored figures never pay it.
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, top_k_accuracy_score

    y = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    classes = list(range(len(labels)))
    if len(y) == 0:
        return {
            "accuracy": None,
            "top3_accuracy": None,
            "macro_f1": None,
            "n": 0,
            "labels": list(labels),
            "confusion_matrix": [[0] * len(labels) for _ in labels],
            "per_class": {},
        }
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=classes, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        # With 3 classes or fewer the true label is always among the top 3 (sklearn refuses to compute it).
        "top3_accuracy": float(top_k_accuracy_score(y, probabilities, k=3, labels=classes)) if len(labels) > 3 else 1.0,
        "macro_f1": float(f1_score(y, predicted, labels=classes, average="macro", zero_division=0)),
        "n": int(len(y)),
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y, predicted, labels=classes).tolist(),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }


@dataclass
class PredictionSet:
    """One model's predictions on labelled items, the source of every evaluation view.

    `frame` has one row per item: item_id (photo or product), product_id, true and predicted
    (label indices), confidence (probability of the predicted label) and probabilities (all labels).
    """

    name: str
    kind: str  # image | text | combined
    labels: list[str]
    frame: pd.DataFrame
    part: str = "test"  # which items: the held-out test part, or validation
    note: str = ""
    stored_metrics: dict[str, object] | None = None  # computed from this very frame when it was stored
    uncalibrated: np.ndarray | None = None  # the model's probabilities before its calibration, row for row
    calibration: Calibration | None = None  # the model's threshold and prediction sets

    @classmethod
    def from_arrays(
        cls,
        name: str,
        kind: str,
        labels: Sequence[str],
        *,
        item_ids: Sequence[str],
        product_ids: Sequence[str],
        y_true: Sequence[int],
        probabilities: np.ndarray,
        part: str = "test",
        note: str = "",
        uncalibrated: np.ndarray | None = None,
        calibration: Calibration | None = None,
    ) -> PredictionSet:
        probabilities = np.asarray(probabilities, dtype=float).reshape(len(item_ids), len(labels))
        predicted = probabilities.argmax(axis=1) if len(item_ids) else np.empty(0, int)
        frame = pd.DataFrame(
            {
                "item_id": list(item_ids),
                "product_id": list(product_ids),
                "true": np.asarray(y_true, dtype=int),
                "predicted": predicted,
                "confidence": probabilities.max(axis=1) if len(item_ids) else np.empty(0),
                "probabilities": list(probabilities),
            }
        )
        if uncalibrated is not None:
            uncalibrated = np.asarray(uncalibrated, dtype=float).reshape(probabilities.shape)
        return cls(name, kind, list(labels), frame, part, note, uncalibrated=uncalibrated, calibration=calibration)

    @property
    def probabilities(self) -> np.ndarray:
        return np.stack(self.frame["probabilities"].to_list()) if len(self.frame) else np.empty((0, len(self.labels)))

    def metrics(self) -> dict[str, object]:
        """The classification figures, and how far the probabilities can be trusted (reliability.trust_figures)."""
        if self.stored_metrics is not None:
            return self.stored_metrics
        y, probabilities = self.frame["true"].to_numpy(), self.probabilities
        return {
            **classification_metrics(y, probabilities, self.labels),
            **trust_figures(probabilities, y, uncalibrated=self.uncalibrated, calibration=self.calibration),
        }


def per_class_frame(metrics: dict[str, object]) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support, one row per category."""
    per_class = metrics["per_class"]
    assert isinstance(per_class, dict)
    return pd.DataFrame(
        [{"category": label, **scores} for label, scores in per_class.items()], columns=["category", "precision", "recall", "f1", "support"]
    )


def confusion_frame(metrics: dict[str, object]) -> pd.DataFrame:
    """One row per confusion-matrix cell: true and predicted label (name and index), count, and the
    share of the true class's items (the row-normalised value)."""
    labels = list(metrics["labels"])  # type: ignore[call-overload]
    matrix = np.asarray(metrics["confusion_matrix"], dtype=int)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)
    rows = [
        {
            "true": labels[t],
            "predicted": labels[p],
            "true_index": t,
            "predicted_index": p,
            "count": int(matrix[t, p]),
            "share": float(shares[t, p]),
        }
        for t in range(len(labels))
        for p in range(len(labels))
    ]
    return pd.DataFrame(rows)


def cell_items(predictions: PredictionSet, *, true_label: str, predicted_label: str) -> pd.DataFrame:
    """The items behind one confusion-matrix cell, most confident prediction first."""
    true_index, predicted_index = predictions.labels.index(true_label), predictions.labels.index(predicted_label)
    frame = predictions.frame
    chosen = frame[(frame["true"] == true_index) & (frame["predicted"] == predicted_index)]
    chosen = chosen.sort_values(["confidence", "item_id"], ascending=[False, True], kind="stable")
    return chosen.assign(true_label=true_label, predicted_label=predicted_label).reset_index(drop=True)


SUMMARY_METRICS = ("accuracy", "top3_accuracy", "macro_f1", "n")


def compare_metrics(left: dict[str, object], right: dict[str, object], *, names: tuple[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two evaluations side by side: the summary figures, and per-class F1 with the difference."""
    summary = pd.DataFrame(
        {
            "metric": list(SUMMARY_METRICS),
            names[0]: [left[key] for key in SUMMARY_METRICS],
            names[1]: [right[key] for key in SUMMARY_METRICS],
        }
    )
    left_f1, right_f1 = per_class_frame(left).set_index("category")["f1"], per_class_frame(right).set_index("category")["f1"]
    per_class = pd.DataFrame({names[0]: left_f1, names[1]: right_f1})
    per_class["difference"] = per_class[names[1]] - per_class[names[0]]
    return summary, per_class.reset_index(names="category").sort_values("difference", kind="stable").reset_index(drop=True)


def review_candidates(items: pd.DataFrame, labels: Sequence[str]) -> list[dict[str, object]]:
    """One entry per product among a cell's items (photos of one product are merged, keeping the
    least confident in its label): score = the model's probability of the given label, suggestion =
    its top category, with the top 3."""
    candidates: dict[str, dict[str, object]] = {}
    for row in items.itertuples():
        probabilities = np.asarray(row.probabilities, dtype=float)
        score = float(probabilities[int(row.true)])
        if row.product_id in candidates and float(candidates[row.product_id]["score"]) <= score:  # type: ignore[arg-type]
            continue
        order = np.argsort(-probabilities)[:3]
        candidates[str(row.product_id)] = {
            "product_id": str(row.product_id),
            "score": score,
            "given_label": labels[int(row.true)],
            "suggested_label": labels[int(order[0])],
            "top": [(labels[i], float(probabilities[i])) for i in order],
        }
    return list(candidates.values())
