"""Plotly figures of models: confusion matrices that can be clicked, probabilities, training curves.

The confusion matrix is a scatter of square markers, not a heatmap: Streamlit returns point
selections for scatter traces (heatmaps return none), and each marker carries its cell in
`customdata` as [true label, predicted label].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.evaluation.metrics import confusion_frame

CELL_PIXELS = 44


def short_label(label: str, *, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def confusion_figure(metrics: Mapping[str, object], *, normalise: bool = False, title: str = "") -> go.Figure:
    """Rows: true category, columns: predicted. Colour and text: count, or share of the row."""
    cells = confusion_frame(dict(metrics))
    labels = list(metrics["labels"])  # type: ignore[call-overload]
    colour = cells["share"]  # colour by share either way: big classes must not drown the rest
    text = [f"{share:.0%}" if normalise else str(count) for share, count in zip(cells["share"], cells["count"])]
    short = {label: short_label(label) for label in labels}
    figure = go.Figure(
        go.Scatter(
            x=cells["predicted"].map(short),
            y=cells["true"].map(short),
            mode="markers+text",
            text=text,
            textfont={"size": 10, "color": ["white" if share > 0.5 else "#333" for share in colour]},
            customdata=np.stack([cells["true"], cells["predicted"], cells["count"]], axis=1),
            marker={
                "symbol": "square",
                "size": CELL_PIXELS - 4,
                "color": colour,
                "colorscale": "Blues",
                "cmin": 0,
                "cmax": 1,
                "showscale": True,
                "colorbar": {"title": "share of row"},
                "line": {"width": 0},
            },
            hovertemplate="true: %{customdata[0]}<br>predicted: %{customdata[1]}<br>items: %{customdata[2]}<extra></extra>",
        )
    )
    ordered = [short[label] for label in labels]
    size = CELL_PIXELS * len(labels) + 220
    figure.update_layout(
        title=title or ("Confusion matrix (share of each true category)" if normalise else "Confusion matrix (counts)"),
        xaxis={"title": "predicted category", "categoryorder": "array", "categoryarray": ordered, "tickangle": -40, "side": "bottom"},
        yaxis={"title": "true category", "categoryorder": "array", "categoryarray": ordered[::-1]},
        width=size + 120,
        height=size,
        plot_bgcolor="white",
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        clickmode="event+select",
    )
    return figure


def selected_cell(selection: Mapping[str, object] | None) -> tuple[str, str] | None:
    """(true label, predicted label) of the clicked confusion-matrix marker, from a Streamlit
    plotly selection state; None when nothing is selected."""
    state: Any = selection or {}
    points = (state.get("selection") or {}).get("points") or []
    for point in points:
        data = point.get("customdata")
        if data and len(data) >= 2:
            return str(data[0]), str(data[1])
    return None


def probability_bar(labels: Sequence[str], probabilities: Sequence[float], *, top: int = 5, title: str = "") -> go.Figure:
    """The `top` most likely categories, most likely on top."""
    order = np.argsort(-np.asarray(probabilities))[:top][::-1]
    figure = go.Figure(
        go.Bar(
            x=[probabilities[i] for i in order],
            y=[labels[i] for i in order],
            orientation="h",
            text=[f"{probabilities[i]:.1%}" for i in order],
            textposition="auto",
        )
    )
    figure.update_layout(
        title=title,
        xaxis={"range": [0, 1], "tickformat": ".0%", "title": "probability"},
        height=80 + 45 * len(order),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    return figure


def model_comparison_bar(labels: Sequence[str], probabilities: Mapping[str, Sequence[float]], *, top: int = 6) -> go.Figure:
    """Each model's probabilities side by side, for the categories any of them ranks highly."""
    stacked = np.array([list(values) for values in probabilities.values()])
    order = np.argsort(-stacked.max(axis=0))[:top][::-1]
    figure = go.Figure(
        [
            go.Bar(name=model, x=[values[i] for i in order], y=[labels[i] for i in order], orientation="h")
            for model, values in probabilities.items()
        ]
    )
    figure.update_layout(
        barmode="group",
        xaxis={"range": [0, 1], "tickformat": ".0%", "title": "probability"},
        height=120 + 28 * len(order) * len(probabilities),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title="Each model's answer",
    )
    return figure


def smooth(values: Sequence[float], *, weight: float) -> list[float]:
    """Exponential moving average (TensorBoard's smoothing): weight 0 = raw, near 1 = very smooth."""
    smoothed, last = [], None
    for value in values:
        last = value if last is None else weight * last + (1 - weight) * value
        smoothed.append(float(last))
    return smoothed


def training_curves(epochs: pd.DataFrame, *, metric: str, smoothing: float = 0.0, run_names: Mapping[int, str] | None = None) -> go.Figure:
    """Train and validation `metric` (loss or accuracy) per epoch, one colour per run."""
    figure = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for position, (run_id, run_epochs) in enumerate(epochs.sort_values("epoch").groupby("run_id", sort=True)):
        name = (run_names or {}).get(int(run_id), f"run {run_id}")
        colour = palette[position % len(palette)]
        for part, dash in (("train", "dot"), ("val", "solid")):
            figure.add_trace(
                go.Scatter(
                    x=run_epochs["epoch"],
                    y=smooth(run_epochs[f"{part}_{metric}"].tolist(), weight=smoothing),
                    mode="lines+markers",
                    name=f"{name} · {'validation' if part == 'val' else 'train'}",
                    line={"color": colour, "dash": dash},
                )
            )
    figure.update_layout(
        title=f"{metric.capitalize()} per epoch" + (f" (smoothed {smoothing:.1f})" if smoothing else ""),
        xaxis_title="epoch",
        yaxis_title=metric,
        height=380,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        yaxis={"tickformat": ".0%"} if metric == "accuracy" else {},
    )
    return figure


def per_class_bar(per_class: pd.DataFrame, *, value: str = "recall", title: str = "") -> go.Figure:
    """One bar per category (e.g. the active model's recall: its accuracy on that category)."""
    ordered = per_class.sort_values(value)
    figure = go.Figure(
        go.Bar(
            x=ordered[value],
            y=ordered["category"],
            orientation="h",
            text=[f"{v:.0%}" for v in ordered[value]],
            textposition="auto",
            customdata=ordered["support"],
            hovertemplate="%{y}: %{x:.1%} of %{customdata} items<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        xaxis={"range": [0, 1], "tickformat": ".0%"},
        height=80 + 30 * len(ordered),
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return figure


def reliability_figure(metrics: Mapping[str, object], *, title: str = "") -> go.Figure:
    """Accuracy against confidence per bin of the top probability (a calibrated model lies on the
    diagonal), before and after calibration when the model has one; marker size: the bin's items."""
    figure = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"}, name="perfectly calibrated"))
    curves = (("reliability_uncalibrated", "before calibration", "#c44e52"), ("reliability", "calibrated", "#4c72b0"))
    for key, name, colour in curves:
        bins = metrics.get(key)
        if not bins:
            continue
        if key == "reliability" and "reliability_uncalibrated" not in metrics:
            name = "the model's probabilities"
        rows = list(bins)  # type: ignore[call-overload]
        counts = np.array([row["count"] for row in rows], float)
        figure.add_trace(
            go.Scatter(
                x=[row["confidence"] for row in rows],
                y=[row["accuracy"] for row in rows],
                mode="lines+markers",
                name=name,
                line={"color": colour},
                marker={"size": 6 + 18 * np.sqrt(counts / counts.max())},
                customdata=counts,
                hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata:.0f} items<extra></extra>",
            )
        )
    figure.update_layout(
        title=title or None,
        xaxis={"title": "confidence (top probability)", "range": [0, 1.02]},
        yaxis={"title": "accuracy", "range": [0, 1.02]},
        height=420,
        margin={"t": 40 if title else 10, "l": 10, "r": 10, "b": 10},
        legend={"orientation": "h", "y": -0.2},
    )
    return figure
