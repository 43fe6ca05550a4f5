"""The labelling review: handing queue items (services.review_queue) to reviewers one
at a time, their decisions (each label change written with its history row in one transaction,
against the version the reviewer saw) and undo. The history as a table is services.label_history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import TYPE_CHECKING

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from core.enums import LabelSource
from db.session import session_scope
from db.tables import Category, LabelHistory, Product, ReviewItem, utc_now
from services.review_queue import DECISIONS, PENDING, QueueFilters, ReviewError, UnknownProduct, pending_items

if TYPE_CHECKING:  # pandas takes half a second to import: only the functions that build frames load it
    pass

CLAIM_MINUTES = 15  # an item a reviewer opened and left is handed to others after this


class StaleLabelError(RuntimeError):
    """The label changed since the reviewer saw it: their update is refused, nothing is written."""


def claim_next(
    engine: Engine, reviewer: str, *, filters: QueueFilters = QueueFilters(), after: str | None = None, skip: Sequence[str] = ()
) -> str | None:
    """Hand the reviewer the worst pending item nobody else holds (or the one after `after`, in
    queue order); the claim is taken atomically, so two reviewers never get the same item."""
    if not reviewer.strip():
        raise ReviewError("give your name to review")
    now = utc_now()
    lapsed = now - timedelta(minutes=CLAIM_MINUTES)
    with session_scope(engine) as session:
        statement = pending_items(filters).where(
            or_(ReviewItem.claimed_by.is_(None), ReviewItem.claimed_by == reviewer, ReviewItem.claimed_at < lapsed)
        )
        if skip:
            statement = statement.where(ReviewItem.product_id.not_in(list(skip)))
        if after is not None:
            anchor = session.get(ReviewItem, after)
            if anchor is not None:
                statement = statement.where(
                    or_(ReviewItem.score > anchor.score, (ReviewItem.score == anchor.score) & (ReviewItem.product_id > after))
                )
        candidates = session.scalars(
            statement.with_only_columns(ReviewItem.product_id).order_by(ReviewItem.score, ReviewItem.product_id).limit(20)
        ).all()
        for product_id in candidates:
            taken = session.execute(
                update(ReviewItem)
                .where(
                    ReviewItem.product_id == product_id,
                    ReviewItem.status == PENDING,
                    or_(ReviewItem.claimed_by.is_(None), ReviewItem.claimed_by == reviewer, ReviewItem.claimed_at < lapsed),
                )
                .values(claimed_by=reviewer, claimed_at=now)
            ).rowcount  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
            if taken:
                # Release anything else this reviewer held: one item at a time.
                session.execute(
                    update(ReviewItem)
                    .where(ReviewItem.claimed_by == reviewer, ReviewItem.product_id != product_id, ReviewItem.status == PENDING)
                    .values(claimed_by=None, claimed_at=None)
                )
                return product_id
    return None


def release(engine: Engine, reviewer: str) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(ReviewItem)
            .where(ReviewItem.claimed_by == reviewer, ReviewItem.status == PENDING)
            .values(claimed_by=None, claimed_at=None)
        )


@dataclass(frozen=True)
class ReviewCard:
    """What a reviewer sees of one item, and the label version their decision is based on."""

    product_id: str
    name: str
    description: str
    price_pence: int
    location: str
    category: str
    label_version: int
    image_paths: tuple[str, ...]
    score: float
    suggested_label: str
    top: list[tuple[str, float]]
    is_issue: bool
    source: str
    status: str
    prediction_set: list[str] | None = None  # an upload's conformal set when the model was not sure


def review_card(engine: Engine, product_id: str) -> ReviewCard | None:
    with session_scope(engine) as session:
        item = session.get(ReviewItem, product_id)
        product = session.scalar(select(Product).where(Product.id == product_id))
        if item is None or product is None:
            return None
        return ReviewCard(
            product.id,
            product.name,
            product.description,
            product.price_pence,
            product.location,
            product.category.path,
            product.label_version,
            tuple(image.file_path for image in product.images),
            item.score,
            item.suggested_label,
            [(label, float(probability)) for label, probability in item.top],
            item.is_issue,
            item.source,
            item.status,
            list(item.prediction_set) if item.prediction_set else None,
        )


def decide(
    engine: Engine, product_id: str, *, action: str, reviewer: str, seen_version: int, new_category: str | None = None, reason: str = ""
) -> None:
    """Record a reviewer's decision on a queued product, in one transaction with its label change.

    `action`: keep | relabel (to `new_category`, a category path) | not_a_product. Refused with
    StaleLabelError when the product's label changed after version `seen_version` was shown.
    """
    if not reviewer.strip():
        raise ReviewError("give your name to review")
    with session_scope(engine) as session:
        item = session.get(ReviewItem, product_id)
        product = session.scalar(select(Product).where(Product.id == product_id))
        if item is None or product is None:
            raise ReviewError(f"product {product_id} is not in the review queue")
        if item.status != PENDING:
            raise StaleLabelError(f"{product.name!r} was already reviewed by {item.reviewed_by} ({item.status})")
        if _held_by_other(item, reviewer):
            raise StaleLabelError(f"{product.name!r} is being reviewed by {item.claimed_by}")
        history: LabelHistory | None = None
        if action == "keep":
            _bump_version(session, product, seen_version, category_id=product.category_id)
            status = "kept"
        elif action == "relabel":
            history = _relabel(
                session,
                product,
                new_category,
                seen_version,
                changed_by=reviewer,
                reason=reason or f"review: suggested {item.suggested_label}",
                source=LabelSource.REVIEW,
                same_hint=": use keep",
            )
            status = "relabelled"
        elif action == "not_a_product":
            history = LabelHistory(
                product_id=product.id,
                old_category_id=product.category_id,
                new_category_id=product.category_id,
                changed_by=reviewer,
                reason=reason or "marked as not a product / spam",
                source=LabelSource.REVIEW,
                action="not_a_product",
            )
            _bump_version(session, product, seen_version, category_id=product.category_id, status="not_a_product")
            status = "not_a_product"
        else:
            raise ReviewError(f"unknown action {action!r}")
        if history is not None:
            session.add(history)
            session.flush()
        _close(item, status, reviewer=reviewer, decided_version=seen_version + 1, history=history)


def fix_label(
    engine: Engine,
    product_id: str,
    *,
    new_category: str,
    changed_by: str,
    seen_version: int,
    reason: str = "",
    source: LabelSource = LabelSource.MANUAL,
) -> int:
    """A label corrected by hand outside the queue (from a product's detail view, or through the API with
    `source` api): the same optimistic check as a review decision, the change and its history row in one
    transaction; returns the new label version. A queued item of the product is closed as relabelled by that person."""
    if not changed_by.strip():
        raise ReviewError("give your name to change a label")
    with session_scope(engine) as session:
        product = session.scalar(select(Product).where(Product.id == product_id))
        if product is None:
            raise UnknownProduct(f"product {product_id} is not in the catalogue")
        if product.label_version != seen_version:
            raise _changed_since(product)
        history = _relabel(
            session, product, new_category, seen_version, changed_by=changed_by, reason=reason or "corrected by hand", source=source
        )
        session.add(history)
        session.flush()
        item = session.get(ReviewItem, product_id)
        if item is not None and item.status == PENDING:
            _close(item, "relabelled", reviewer=changed_by, decided_version=seen_version + 1, history=history)
        return seen_version + 1


def _relabel(
    session: Session,
    product: Product,
    new_category: str | None,
    seen_version: int,
    *,
    changed_by: str,
    reason: str,
    source: LabelSource,
    same_hint: str = "",
) -> LabelHistory:
    """Move `product` to the category at path `new_category` under the optimistic lock; its history row (not yet added)."""
    category = session.scalar(select(Category).where(Category.path == (new_category or "")))
    if category is None:
        raise ReviewError(f"unknown category {new_category!r}")
    if category.id == product.category_id:
        raise ReviewError(f"that is the current category{same_hint}")
    history = LabelHistory(
        product_id=product.id,
        old_category_id=product.category_id,
        new_category_id=category.id,
        changed_by=changed_by,
        reason=reason,
        source=source,
        action="relabel",
    )
    _bump_version(session, product, seen_version, category_id=category.id)
    return history


def _close(item: ReviewItem, status: str, *, reviewer: str, decided_version: int, history: LabelHistory | None) -> None:
    """A queue item decided: by whom, when, the label version it left, its history row; claim released."""
    item.status, item.reviewed_by, item.reviewed_at = status, reviewer, utc_now()
    item.decided_version, item.history_id = decided_version, history.id if history else None
    item.claimed_by = item.claimed_at = None


def _held_by_other(item: ReviewItem, reviewer: str) -> bool:
    if item.claimed_by in (None, reviewer) or item.claimed_at is None:
        return False
    claimed_at = item.claimed_at if item.claimed_at.tzinfo else item.claimed_at.replace(tzinfo=timezone.utc)  # SQLite drops the zone
    return claimed_at > utc_now() - timedelta(minutes=CLAIM_MINUTES)


def _bump_version(session: Session, product: Product, seen_version: int, *, category_id: int, status: str | None = None) -> None:
    """The optimistic lock: the update lands only if the label is still at the version the reviewer saw."""
    values: dict[str, object] = {"category_id": category_id, "label_version": Product.label_version + 1}
    if status is not None:
        values["status"] = status
    landed = session.execute(
        update(Product)
        .where(Product.pk == product.pk, Product.label_version == seen_version)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
    if landed != 1:  # raising inside session_scope rolls the whole transaction back
        raise _changed_since(product)
    session.expire(product)


def _changed_since(product: Product) -> StaleLabelError:
    return StaleLabelError(f"{product.name!r} was changed by someone else since you opened it: reload it and decide again")


def undo_last(engine: Engine, reviewer: str) -> str | None:
    """Undo the reviewer's most recent decision (label, status and queue entry back as before); the
    undo is itself a history row. Returns the product id, or None when there is nothing to undo."""
    with session_scope(engine) as session:
        item = session.scalars(
            select(ReviewItem)
            .where(ReviewItem.reviewed_by == reviewer, ReviewItem.status.in_(DECISIONS))
            .order_by(ReviewItem.reviewed_at.desc())
            .limit(1)
        ).first()
        if item is None:
            return None
        product = session.scalar(select(Product).where(Product.id == item.product_id))
        assert product is not None
        if product.label_version != item.decided_version:
            raise StaleLabelError(f"{product.name!r} was changed again after your decision: it cannot be undone")
        original = session.get(LabelHistory, item.history_id) if item.history_id else None
        category_id = original.old_category_id if original is not None and original.action == "relabel" else product.category_id
        if original is not None:
            session.add(
                LabelHistory(
                    product_id=product.id,
                    old_category_id=product.category_id,
                    new_category_id=category_id,
                    changed_by=reviewer,
                    reason=f"undo of history row {original.id} ({original.action})",
                    source=LabelSource.REVIEW,
                    action="undo",
                )
            )
        _bump_version(
            session,
            product,
            item.decided_version,
            category_id=category_id,  # type: ignore[arg-type]
            status="active" if item.status == "not_a_product" else None,
        )
        item.status, item.reviewed_by, item.reviewed_at, item.decided_version, item.history_id = PENDING, None, None, None, None
        item.claimed_by, item.claimed_at = reviewer, utc_now()
        return item.product_id
