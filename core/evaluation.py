"""Classification metrics from scikit-learn, in the JSON shape the CLI and the app use."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, top_k_accuracy_score


def classification_metrics(y_true: Sequence[int], probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, object]:
    """accuracy, top-3 accuracy, macro-F1, n, labels, confusion matrix (rows = true) and per-class scores."""
    y = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    classes = list(range(len(labels)))
    if len(y) == 0:
        return {"accuracy": None, "top3_accuracy": None, "macro_f1": None, "n": 0, "labels": list(labels),
                "confusion_matrix": [[0] * len(labels) for _ in labels], "per_class": {}}
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=classes, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "top3_accuracy": float(top_k_accuracy_score(y, probabilities, k=min(3, len(labels)), labels=classes)),
        "macro_f1": float(f1_score(y, predicted, labels=classes, average="macro", zero_division=0)),
        "n": int(len(y)),
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y, predicted, labels=classes).tolist(),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }
