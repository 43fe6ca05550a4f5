"""What the Classify page shows for a listing: the predicted category with each model's
probabilities, the most similar catalogue items, and a suggested price."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image
from sqlalchemy.orm import Session

from core.classify import CategoryClassifier, Prediction
from core.pricing import PricePredictor, PriceSuggestion, suggest_price
from core.search_indexes import SearchIndexes
from db.search import RankedHit, similar_products

SIMILAR_ITEMS = 8


@dataclass(frozen=True)
class ListingAnalysis:
    prediction: Prediction
    similar: list[RankedHit] = field(default_factory=list)
    price: PriceSuggestion | None = None


def listing_text(title: str, description: str) -> str:
    return "\n".join(part.strip() for part in (title, description) if part and part.strip())


def analyse_listing(classifier: CategoryClassifier, *, photos: Sequence[Image.Image], title: str, description: str,
                    session: Session | None = None, indexes: SearchIndexes | None = None,
                    price_predictor: PricePredictor | None = None) -> ListingAnalysis:
    """Raises core.classify.NothingToClassify when neither a photo nor words are given. Similar items
    and the price need a catalogue (session and indexes); without one only the category comes back."""
    text = listing_text(title, description)
    prediction = classifier.classify(images=list(photos), text=text)
    if session is None or indexes is None:
        return ListingAnalysis(prediction)
    similar = similar_products(session, indexes, text=text, photos=photos, k=SIMILAR_ITEMS)
    model_estimate = price_predictor.predict(name=title or text[:200], description=description) if price_predictor and text else None
    price = suggest_price(model_estimate=model_estimate, neighbour_prices=[float(hit.product.price) for hit in similar])
    return ListingAnalysis(prediction, similar, price)
