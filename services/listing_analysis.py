"""What the Classify page shows for a listing: the predicted category with each model's
probabilities, the most similar catalogue items, and a suggested price."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image
from sqlalchemy import Engine

from core.inference.category_classifier import CategoryClassifier, Prediction
from core.inference.pricing import PricePredictor, PriceSuggestion, suggest_price
from core.search.indexes import SearchIndexes
from db.session import session_scope
from services.search import RankedHit, similar_products

SIMILAR_ITEMS = 8


@dataclass(frozen=True)
class ListingAnalysis:
    prediction: Prediction
    similar: list[RankedHit] = field(default_factory=list)
    price: PriceSuggestion | None = None


def listing_text(title: str, description: str) -> str:
    return "\n".join(part.strip() for part in (title, description) if part and part.strip())


def analyse_listing(
    classifier: CategoryClassifier,
    *,
    photos: Sequence[Image.Image],
    title: str,
    description: str,
    engine: Engine | None = None,
    indexes: SearchIndexes | None = None,
    price_predictor: PricePredictor | None = None,
) -> ListingAnalysis:
    """Raises core.inference.category_classifier.NothingToClassify when neither a photo nor words are given. Similar items
    need the catalogue (engine) and its vector indexes and the price model a fitted
    `price_predictor`; the price comes from whichever of the two there is."""
    text = listing_text(title, description)
    prediction = classifier.classify(images=list(photos), text=text)
    similar: list[RankedHit] = []
    if engine is not None and indexes is not None:
        with session_scope(engine) as session:
            similar = similar_products(session, indexes, text=text, photos=photos, k=SIMILAR_ITEMS)
    model_estimate = price_predictor.predict(name=title or text[:200], description=description) if price_predictor and text else None
    price = suggest_price(model_estimate=model_estimate, neighbour_prices=[float(hit.product.price) for hit in similar])
    return ListingAnalysis(prediction, similar, price)
