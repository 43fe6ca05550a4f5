"""Suggested prices: the price model learns from words, the suggestion combines it with similar items."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from core.inference.pricing import PricePredictor, suggest_price


def listings(n: int = 120) -> pd.DataFrame:
    rng = random.Random(1)
    rows = []
    for index in range(n):
        expensive = index % 2 == 0
        word = rng.choice(["designer", "leather", "antique"]) if expensive else rng.choice(["plastic", "used", "basic"])
        rows.append(
            {
                "name": f"{word} chair {index}",
                "description": f"a {word} chair",
                "location": rng.choice(["Leeds", "York"]),
                "price": rng.uniform(400, 600) if expensive else rng.uniform(5, 15),
            }
        )
    return pd.DataFrame(rows)


def test_price_model_learns_which_words_cost_more() -> None:
    model = PricePredictor.fit(listings())
    expensive = model.predict(name="designer leather chair", description="antique")
    cheap = model.predict(name="plastic chair", description="used basic")
    assert expensive > 5 * cheap and expensive > 100 and cheap < 40


def test_price_model_needs_enough_listings() -> None:
    with pytest.raises(ValueError, match="at least"):
        PricePredictor.fit(listings(10))


def test_suggestion_combines_the_model_and_similar_items() -> None:
    suggestion = suggest_price(model_estimate=100.0, neighbour_prices=[80, 90, 110, 400])
    assert suggestion is not None
    assert suggestion.neighbour_median == 100.0 and suggestion.estimate == pytest.approx(100.0, rel=0.01)
    assert suggestion.low <= 87.5 and suggestion.high >= 182.5  # the similar items' middle half
    only_model = suggest_price(model_estimate=50.0, neighbour_prices=[])
    assert only_model is not None and only_model.low == only_model.high == only_model.estimate == 50.0
    free_items = suggest_price(model_estimate=None, neighbour_prices=[0, 0])
    assert free_items is None
