"""Suggested prices: the seed's price predictor (TF-IDF of name, description and location + a
linear model on log price) and the prices of the nearest similar catalogue items.

The baseline's grid search (core.training.baselines) picked Ridge(alpha=3) on name 1-2-grams; the app
fits that configuration directly on the catalogue (a few seconds), so no model file is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

PRICE_COLUMNS = ("name", "description", "location")
MIN_LISTINGS = 20  # fewer priced listings than this give no meaningful model


def price_pipeline(*, name_ngrams: tuple[int, int] = (1, 2), alpha: float = 3.0) -> Pipeline:
    """TF-IDF of name, description and location -> Ridge regression (on log price)."""
    columns = ColumnTransformer(
        [
            ("name", TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=name_ngrams), "name"),
            ("description", TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=20000), "description"),
            ("location", TfidfVectorizer(min_df=2), "location"),
        ]
    )
    return Pipeline([("features", columns), ("regression", Ridge(alpha=alpha))])


def log_price(prices: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.log1p(np.asarray(prices, dtype=float))


@dataclass
class PricePredictor:
    pipeline: Pipeline
    n_listings: int

    @classmethod
    def fit(cls, listings: pd.DataFrame) -> PricePredictor:
        """`listings` has name, description, location and price (£) columns."""
        if len(listings) < MIN_LISTINGS:
            raise ValueError(f"a price model needs at least {MIN_LISTINGS} listings; the catalogue has {len(listings)}")
        frame = listings.loc[:, list(PRICE_COLUMNS)].fillna("")
        return cls(price_pipeline().fit(frame, log_price(listings["price"])), len(listings))

    def predict(self, *, name: str, description: str = "", location: str = "") -> float:
        frame = pd.DataFrame([{"name": name or "", "description": description or "", "location": location or ""}])
        return float(max(0.0, np.expm1(self.pipeline.predict(frame)[0])))


@dataclass(frozen=True)
class PriceSuggestion:
    estimate: float  # £: geometric mean of the model's estimate and the similar items' median
    low: float  # £: the range covers the similar items' middle half and the model's estimate
    high: float
    model_estimate: float | None
    neighbour_median: float | None
    neighbours: int


def suggest_price(*, model_estimate: float | None, neighbour_prices: Sequence[float]) -> PriceSuggestion | None:
    """Combine both signals; prices are log-normal-ish, so they are averaged on a log scale."""
    prices = np.asarray([price for price in neighbour_prices if price > 0], dtype=float)
    median = float(np.median(prices)) if len(prices) else None
    points = [value for value in (model_estimate, median) if value is not None and value > 0]
    if not points:
        return None
    estimate = float(np.expm1(np.mean(log_price(points))))
    low_high = [*points]
    if len(prices):
        low_high += [float(np.percentile(prices, 25)), float(np.percentile(prices, 75))]
    return PriceSuggestion(round(estimate, 2), round(min(low_high), 2), round(max(low_high), 2), model_estimate, median, len(prices))
