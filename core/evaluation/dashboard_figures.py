"""Catalogue figures for the dashboard, as plain functions over a products frame (no Streamlit)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def category_summary(products: pd.DataFrame, *, level: str = "top", within: str | None = None) -> pd.DataFrame:
    """Products and photos per category; `level="sub"` with `within=TOP` drills into one top level."""
    frame = products if within is None else products[products["top"] == within]
    summary = (
        frame.groupby(level)
        .agg(products=("id", "size"), images=("photos", "sum"), median_price=("price", "median"))
        .sort_values("products", ascending=False)
        .reset_index()
        .rename(columns={level: "category"})
    )
    return summary


def location_summary(products: pd.DataFrame, *, by: str = "town", top: int = 15) -> pd.DataFrame:
    """Most frequent locations: `town` is the full location, `county` its last part."""
    locations = products["location"].fillna("").str.strip()
    if by == "county":
        locations = locations.str.split(",").str[-1].str.strip()
    counts = locations[locations != ""].value_counts().head(top)
    return counts.rename_axis("location").reset_index(name="products")


def products_without_photos(products: pd.DataFrame) -> pd.DataFrame:
    return products.loc[products["photos"] == 0, ["id", "name", "category", "price", "location"]].reset_index(drop=True)


def category_bar(summary: pd.DataFrame, *, title: str) -> go.Figure:
    long = summary.melt(id_vars="category", value_vars=["products", "images"], var_name="count of", value_name="n")
    figure = px.bar(long, x="n", y="category", color="count of", barmode="group", orientation="h", title=title)
    figure.update_layout(yaxis={"categoryorder": "total ascending", "title": None}, xaxis_title=None, height=max(320, 34 * len(summary)))
    return figure


def category_treemap(products: pd.DataFrame) -> go.Figure:
    """Click a top level to drill into its sub-categories."""
    counts = products.groupby(["top", "sub"]).size().reset_index(name="products")
    figure = px.treemap(
        counts, path=[px.Constant("All"), "top", "sub"], values="products", title="Products per category (click to drill down)"
    )
    figure.update_traces(root_color="lightgrey")
    figure.update_layout(margin={"t": 50, "l": 10, "r": 10, "b": 10}, height=520)
    return figure


def price_box(products: pd.DataFrame) -> go.Figure:
    """Price distribution per top-level category on a log scale (free items shown at £0.01)."""
    frame = products.assign(price_shown=products["price"].clip(lower=0.01))
    order = frame.groupby("top")["price"].median().sort_values().index.tolist()
    figure = px.box(
        frame,
        x="price_shown",
        y="top",
        log_x=True,
        points=False,
        category_orders={"top": order},
        title="Price per category (log scale)",
        labels={"price_shown": "price (£)", "top": ""},
    )
    figure.update_layout(height=max(360, 34 * len(order)))
    return figure


def count_bar(summary: pd.DataFrame, *, label: str, value: str, title: str) -> go.Figure:
    """Horizontal bars of `value` per `label`, largest on top."""
    figure = px.bar(summary, x=value, y=label, orientation="h", title=title)
    figure.update_layout(yaxis={"categoryorder": "total ascending", "title": None}, height=max(320, 26 * len(summary)))
    return figure


def location_bar(summary: pd.DataFrame, *, title: str) -> go.Figure:
    return count_bar(summary, label="location", value="products", title=title)
