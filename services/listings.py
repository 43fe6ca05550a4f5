"""Adding a listing (from the Classify page, source "upload", or the HTTP API, source "api"): the product,
its cleaned photos and a label-history row with the model's confidence, all or nothing."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.data.cleaning import CATEGORY_SEPARATOR, clean_description, clean_product_name, price_to_pence, split_category
from core.data.images import DEFAULT_CANVAS_SIZE, media_path_for, open_image, save_cleaned
from core.enums import LabelSource
from db.session import session_scope
from db.tables import Category, Image, LabelHistory, Product
from services.review_queue import QueueEntry, queue_item

if TYPE_CHECKING:
    from core.inference.category_classifier import Prediction

MAX_NAME_CHARS = 500
UPLOAD_REVIEW_BELOW = 0.5  # an upload whose chosen category the model gave less than this joins the review queue
MAX_DESCRIPTION_CHARS = 20_000


class ListingError(ValueError):
    """The listing cannot be saved as given; the message says what to change, `field` which input."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class UploadedPhoto:
    name: str
    data: bytes  # the file as uploaded: its checksum is recorded, the cleaned copy is stored


@dataclass(frozen=True)
class NewListing:
    name: str
    description: str
    price: Decimal
    location: str
    category: str  # an existing category path (top level or deeper)
    photos: Sequence[UploadedPhoto] = ()
    predicted_category: str | None = None  # the model's top-level answer, for the history
    confidence: float | None = None  # the model's probability of the chosen top-level category
    model: str | None = None  # image | text | combined
    top: Sequence[tuple[str, float]] = ()  # the model's best categories, best first
    confident: bool | None = None  # the model's answer reached its calibrated threshold
    prediction_set: Sequence[str] | None = None  # the model's conformal set of categories

    @property
    def needs_review(self) -> bool:
        """The model was not sure of its answer, or doubted the category the listing is filed under: it
        joins the review queue."""
        if self.confidence is None or not self.top:
            return False
        return self.confident is False or self.confidence < UPLOAD_REVIEW_BELOW


def judged_by(listing: NewListing, prediction: Prediction) -> NewListing:
    """The listing with the model's verdict on it: its answer, its best categories, and its probability of
    the top-level category the listing is filed under (low: the listing joins the review queue)."""
    chosen_top = split_category(listing.category)[0] if listing.category.strip() else ""
    answer = prediction.probabilities.get(prediction.model, [])
    confidence = answer[prediction.labels.index(chosen_top)] if chosen_top in prediction.labels and answer else None
    return replace(
        listing,
        predicted_category=prediction.category,
        confidence=confidence,
        model=prediction.model,
        top=prediction.top,
        confident=prediction.confident,
        prediction_set=prediction.prediction_set,
    )


def add_listing(
    engine: Engine,
    listing: NewListing,
    *,
    media_dir: Path,
    added_by: str,
    image_size: int = DEFAULT_CANVAS_SIZE,
    source: LabelSource = LabelSource.UPLOAD,
) -> str:
    """Save the listing; returns its new product id. Nothing is written when any part is refused."""
    name = clean_product_name(listing.name)[:MAX_NAME_CHARS]
    if not name:
        raise ListingError("give the item a title", field="name")
    if listing.price < 0:
        raise ListingError("the price cannot be negative", field="price")
    path = CATEGORY_SEPARATOR.join(split_category(listing.category))
    opened = [(photo, open_image(photo.data, name=photo.name)) for photo in listing.photos]  # ImageError names a bad file
    product_id = uuid.uuid4().hex
    written: list[Path] = []
    try:
        with session_scope(engine) as session:
            category = session.scalar(select(Category).where(Category.path == path))
            if category is None:
                raise ListingError(f"unknown category {listing.category!r}: pick one of the catalogue's categories", field="category")
            session.add(_product(listing, product_id, name, category, source=source))
            for position, (photo, image) in enumerate(opened):
                relative = media_path_for(image_id := uuid.uuid4().hex)
                save_cleaned(image, media_dir / relative, size=image_size)
                written.append(media_dir / relative)
                session.add(
                    Image(
                        id=image_id,
                        product_id=product_id,
                        position=position,
                        file_path=relative,
                        original_path=f"{source}:{photo.name[:900]}",
                        width=image.width,
                        height=image.height,
                        checksum=hashlib.sha256(photo.data).hexdigest(),
                        source_ref=source,
                    )
                )
            session.flush()
            _record_upload(session, listing, product_id, category, added_by=added_by, source=source)
    except BaseException:
        for target in written:  # the transaction rolled back: its photo files go too
            target.unlink(missing_ok=True)
        raise
    return product_id


def _product(listing: NewListing, product_id: str, name: str, category: Category, *, source: LabelSource) -> Product:
    return Product(
        id=product_id,
        name=name,
        raw_name=listing.name[:1000],
        description=clean_description(listing.description)[:MAX_DESCRIPTION_CHARS],
        raw_description=listing.description[:MAX_DESCRIPTION_CHARS],
        price_pence=price_to_pence(listing.price),
        location=" ".join(listing.location.split())[:200],
        category=category,
        source=source,
    )


def _record_upload(
    session: Session, listing: NewListing, product_id: str, category: Category, *, added_by: str, source: LabelSource
) -> None:
    """The label-history row of the new listing; and a review-queue entry when the model doubted its category."""
    predicted = f"; the {listing.model} model predicted {listing.predicted_category}" if listing.predicted_category else ""
    session.add(
        LabelHistory(
            product_id=product_id,
            old_category_id=None,
            new_category_id=category.id,
            changed_by=added_by,
            reason=f"uploaded as {category.path}{predicted}",
            source=source,
            confidence=listing.confidence,
        )
    )
    if listing.needs_review and listing.confidence is not None:
        entry = QueueEntry(
            product_id,
            listing.confidence,
            split_category(category.path)[0],
            listing.top[0][0],
            list(listing.top[:3]),
            is_issue=False,
            source=source,
            prediction_set=None if listing.confident else list(listing.prediction_set or []) or None,
        )
        session.add(queue_item(entry))
