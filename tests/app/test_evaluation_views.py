"""Evaluation views: a confusion-matrix cell maps to exactly its items, most confident first; the
clickable figure carries each cell; comparisons and training curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.evaluation.figures import confusion_figure, selected_cell, smooth, training_curves
from core.evaluation.metrics import PredictionSet, cell_items, compare_metrics, confusion_frame, per_class_frame

LABELS = ["Appliances", "Clothes", "Phones"]


def prediction_set() -> PredictionSet:
    # (true, predicted, confidence) per item; probabilities put `confidence` on the predicted label.
    items = [(0, 0, 0.9), (0, 0, 0.6), (0, 1, 0.7), (0, 1, 0.95), (1, 1, 0.8), (2, 0, 0.5), (2, 2, 0.99), (2, 2, 0.4)]
    probabilities = []
    for _, predicted, confidence in items:
        row = np.full(3, (1 - confidence) / 2)
        row[predicted] = confidence
        probabilities.append(row)
    ids = [f"item{index}" for index in range(len(items))]
    return PredictionSet.from_arrays(
        "test", "text", LABELS, item_ids=ids, product_ids=ids, y_true=[true for true, _, _ in items], probabilities=np.array(probabilities)
    )


def test_cell_items_are_exactly_the_cell_most_confident_first() -> None:
    predictions = prediction_set()
    confused = cell_items(predictions, true_label="Appliances", predicted_label="Clothes")
    assert confused["item_id"].tolist() == ["item3", "item2"]
    assert confused["confidence"].tolist() == pytest.approx([0.95, 0.7])
    assert set(confused["true_label"]) == {"Appliances"} and set(confused["predicted_label"]) == {"Clothes"}
    assert cell_items(predictions, true_label="Phones", predicted_label="Phones")["item_id"].tolist() == ["item6", "item7"]
    assert cell_items(predictions, true_label="Clothes", predicted_label="Phones").empty


def test_every_item_falls_in_the_cell_the_matrix_counts() -> None:
    predictions = prediction_set()
    metrics = predictions.metrics()
    cells = confusion_frame(metrics)
    for cell in cells.itertuples():
        assert len(cell_items(predictions, true_label=cell.true, predicted_label=cell.predicted)) == cell.count
    assert cells["count"].sum() == metrics["n"] == 8
    shares = cells.groupby("true")["share"].sum()
    assert shares.tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert metrics["accuracy"] == pytest.approx(5 / 8)


def test_the_confusion_figure_carries_each_cell_for_a_click() -> None:
    metrics = prediction_set().metrics()
    figure = confusion_figure(metrics)
    trace = figure.data[0]
    assert trace.type == "scatter" and trace.marker.symbol == "square"
    cells = {(str(true), str(predicted)): int(count) for true, predicted, count in trace.customdata}
    assert cells[("Appliances", "Clothes")] == 2 and len(cells) == 9
    assert list(trace.text[:3]) == ["2", "2", "0"]
    assert list(confusion_figure(metrics, normalise=True).data[0].text[:3]) == ["50%", "50%", "0%"]
    state = {"selection": {"points": [{"x": "Clothes", "y": "Appliances", "customdata": ["Appliances", "Clothes", 2]}]}}
    assert selected_cell(state) == ("Appliances", "Clothes")
    assert selected_cell({"selection": {"points": []}}) is None and selected_cell(None) is None


def test_per_class_table_and_comparison() -> None:
    metrics = prediction_set().metrics()
    table = per_class_frame(metrics)
    assert table["category"].tolist() == LABELS and table["support"].tolist() == [4, 1, 3]
    better = PredictionSet.from_arrays(
        "all right", "text", LABELS, item_ids=["a", "b", "c"], product_ids=["a", "b", "c"], y_true=[0, 1, 2], probabilities=np.eye(3)
    ).metrics()
    summary, per_class = compare_metrics(metrics, better, names=("before", "after"))
    assert summary.set_index("metric").loc["accuracy"].tolist() == pytest.approx([5 / 8, 1.0])
    assert (per_class["difference"] >= 0).all() and per_class["after"].tolist() == [1.0, 1.0, 1.0]


def test_smoothing_and_training_curves() -> None:
    assert smooth([1.0, 0.0, 0.0], weight=0.0) == [1.0, 0.0, 0.0]
    assert smooth([1.0, 0.0, 0.0], weight=0.5) == [1.0, 0.5, 0.25]
    epochs = pd.DataFrame(
        {
            "run_id": [1, 1, 2],
            "epoch": [1, 2, 1],
            "train_loss": [1.0, 0.5, 0.9],
            "val_loss": [1.1, 0.7, 1.0],
            "train_accuracy": [0.5, 0.7, 0.6],
            "val_accuracy": [0.4, 0.6, 0.5],
        }
    )
    figure = training_curves(epochs, metric="loss")
    assert [trace.name for trace in figure.data] == ["run 1 · train", "run 1 · validation", "run 2 · train", "run 2 · validation"]
    assert list(figure.data[1].y) == [1.1, 0.7]


@pytest.mark.parametrize("n_labels", [2, 3])
def test_metrics_of_few_classes(n_labels: int) -> None:
    from core.evaluation.metrics import classification_metrics

    probabilities = np.eye(n_labels)[[0, 1, 1, 0]]
    metrics = classification_metrics([0, 1, 0, 0], probabilities, LABELS[:n_labels])
    assert metrics["accuracy"] == 0.75 and metrics["top3_accuracy"] == 1.0 and metrics["n"] == 4
