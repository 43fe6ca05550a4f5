"""The review queue: likely mislabelled products, scored out of fold by the models (cleanlab) or
sent from Evaluation and Classify, listed worst first, and how far the review has come."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine, Select, delete, func, or_, select

from core.data.cleaning import CATEGORY_SEPARATOR
from core.enums import LabelSource
from core.runtime.progress import Progress
from db.session import session_scope
from db.tables import Category, Product, ReviewItem

if TYPE_CHECKING:  # pandas takes half a second to import: only the functions that build frames load it
    import pandas as pd


class ReviewError(ValueError):
    """The action cannot be done as asked; the message says why."""


class UnknownProduct(ReviewError):
    """The product is not in the catalogue (any more)."""


PENDING = "pending"

DECISIONS = ("kept", "relabelled", "not_a_product")


@dataclass(frozen=True)
class QueueEntry:
    product_id: str
    score: float
    given_label: str
    suggested_label: str
    top: list[tuple[str, float]]
    is_issue: bool
    source: str
    prediction_set: list[str] | None = None  # the model's set when it was not confident (uploads)


@dataclass(frozen=True)
class QueueFilters:
    current: str | None = None  # top-level category the product has now
    suggested: str | None = None
    max_score: float | None = None


def replace_queue(engine: Engine, entries: Sequence[QueueEntry], *, source: str = LabelSource.CROSS_VALIDATION) -> int:
    """Put a freshly computed queue in place of the pending items of `source`; decided items stay
    (their audit trail), and items already decided are not queued again."""
    with session_scope(engine) as session:
        session.execute(delete(ReviewItem).where(ReviewItem.source == source, ReviewItem.status == PENDING))
        decided = set(session.scalars(select(ReviewItem.product_id)))
        added = 0
        for entry in entries:
            if entry.product_id in decided:
                continue
            session.add(queue_item(entry))
            added += 1
        return added


def refresh_queue(
    engine: Engine, *, cache_dir: Path, media_dir: Path, folds: int = 5, seed: int = 42, progress: Progress | None = None
) -> int:
    """Score every product's label by cross-validation and cleanlab (core.quality.label_issues); queue them
    all, worst first (the page and CLI show the worst). Returns how many are queued."""
    from core.quality.label_issues import catalogue_label_issues
    from db.queries import training_catalogue

    with session_scope(engine) as session:
        catalogue = training_catalogue(session, media_dir=media_dir)
    if len(catalogue.labels) < 2:
        raise ReviewError("the review queue needs products of at least two categories")
    labels = catalogue.labels
    entries = []
    for product_id, issue in catalogue_label_issues(catalogue, cache_dir=cache_dir, folds=folds, seed=seed, progress=progress):
        order = np.argsort(-issue.probabilities)[:3]
        entries.append(
            QueueEntry(
                product_id,
                issue.score,
                labels[issue.given],
                labels[issue.suggested],
                [(labels[i], float(issue.probabilities[i])) for i in order],
                issue.is_issue,
                LabelSource.CROSS_VALIDATION,
            )
        )
    return replace_queue(engine, entries)


def add_to_queue(engine: Engine, entries: Sequence[QueueEntry]) -> int:
    """Queue items from elsewhere (uploads, an evaluation cell); items already queued keep their entry."""
    with session_scope(engine) as session:
        queued = set(
            session.scalars(select(ReviewItem.product_id).where(ReviewItem.product_id.in_([entry.product_id for entry in entries])))
        )
        fresh = [entry for entry in entries if entry.product_id not in queued]
        session.add_all(queue_item(entry) for entry in fresh)
        return len(fresh)


def queue_item(entry: QueueEntry) -> ReviewItem:
    """The queue row of an entry, pending (the top categories rounded for storage)."""
    return ReviewItem(
        product_id=entry.product_id,
        score=entry.score,
        given_label=entry.given_label,
        suggested_label=entry.suggested_label,
        top=[[label, round(float(probability), 5)] for label, probability in entry.top],
        is_issue=entry.is_issue,
        source=entry.source,
        prediction_set=entry.prediction_set,
        status=PENDING,
    )


def pending_items(filters: QueueFilters) -> Select[ReviewItem]:
    statement = (
        select(ReviewItem)
        .join(Product, Product.id == ReviewItem.product_id)
        .join(Category, Category.id == Product.category_id)
        .where(ReviewItem.status == PENDING)
    )
    if filters.current:
        statement = statement.where(
            or_(Category.path == filters.current, Category.path.startswith(filters.current + CATEGORY_SEPARATOR, autoescape=True))
        )
    if filters.suggested:
        statement = statement.where(ReviewItem.suggested_label == filters.suggested)
    if filters.max_score is not None:
        statement = statement.where(ReviewItem.score <= filters.max_score)
    return statement


def queue_frame(engine: Engine, *, filters: QueueFilters = QueueFilters(), limit: int | None = None) -> pd.DataFrame:
    """Pending items, worst (lowest score) first, with the product's name and current category."""
    import pandas as pd

    with session_scope(engine) as session:
        statement = pending_items(filters).add_columns(Product.name, Category.path).order_by(ReviewItem.score, ReviewItem.product_id)
        rows = session.execute(statement.limit(limit) if limit else statement).all()
        return pd.DataFrame(
            [
                {
                    "product_id": item.product_id,
                    "name": name,
                    "current": path,
                    "suggested": item.suggested_label,
                    "score": item.score,
                    "is_issue": item.is_issue,
                    "source": item.source,
                    "prediction_set": list(item.prediction_set) if item.prediction_set else None,
                }
                for item, name, path in rows
            ],
            columns=["product_id", "name", "current", "suggested", "score", "is_issue", "source", "prediction_set"],
        )


def queue_json(engine: Engine, *, limit: int | None = None) -> dict[str, list[dict[str, object]]]:
    """{"items": [{"product_id", "name", "current", "suggested", "score", "prediction_set"}]}, worst label first: the CLI's
    and the API's contract (`prediction_set`: an upload's set of categories when the model was not sure, else null)."""
    items = [
        {
            "product_id": row.product_id,
            "name": row.name,
            "current": row.current.split(CATEGORY_SEPARATOR)[0],
            "suggested": row.suggested,
            "score": round(float(row.score), 6),
            "prediction_set": row.prediction_set,
        }
        for row in queue_frame(engine, limit=limit).itertuples()
    ]
    return {"items": items}


def has_scores(engine: Engine) -> bool:
    """Whether the catalogue's labels have been scored by cross-validation (the queue is built)."""
    with session_scope(engine) as session:
        return bool(session.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.source == LabelSource.CROSS_VALIDATION)))


def progress(engine: Engine) -> dict[str, int]:
    """How many queue items are reviewed (by decision) and how many remain."""
    with session_scope(engine) as session:
        counts = dict(session.execute(select(ReviewItem.status, func.count()).group_by(ReviewItem.status)).all())
    reviewed = sum(counts.get(decision, 0) for decision in DECISIONS)
    return {"reviewed": reviewed, "remaining": counts.get(PENDING, 0), **{decision: counts.get(decision, 0) for decision in DECISIONS}}


def queue_counts_per_category(engine: Engine) -> pd.DataFrame:
    """Pending queue items per current top-level category (the dashboard's view)."""
    frame = queue_frame(engine)
    counts = frame["current"].str.split(CATEGORY_SEPARATOR).str[0].value_counts()
    return counts.rename_axis("category").reset_index(name="in the queue")
