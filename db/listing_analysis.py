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
    need the catalogue's vector indexes (session and indexes) and the price model a fitted
    `price_predictor`; the price comes from whichever of the two there is."""
    text = listing_text(title, description)
    prediction = classifier.classify(images=list(photos), text=text)
    similar = similar_products(session, indexes, text=text, photos=photos, k=SIMILAR_ITEMS) if session is not None and indexes is not None else []
    model_estimate = price_predictor.predict(name=title or text[:200], description=description) if price_predictor and text else None
    price = suggest_price(model_estimate=model_estimate, neighbour_prices=[float(hit.product.price) for hit in similar])
    return ListingAnalysis(prediction, similar, price)
