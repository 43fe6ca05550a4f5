"""The label history as a table, browsable and exportable, and the fixes people made per category."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy.orm import aliased

from core.data.cleaning import CATEGORY_SEPARATOR
from core.enums import FIX_SOURCES
from db.session import session_scope
from db.tables import Category, LabelHistory, Product

if TYPE_CHECKING:  # pandas takes half a second to import: only the functions that build frames load it
    import pandas as pd


HISTORY_COLUMNS = [
    "id",
    "product_id",
    "product",
    "old_category",
    "new_category",
    "action",
    "changed_by",
    "changed_at",
    "source",
    "confidence",
    "reason",
]


def history_frame(engine: Engine, *, changed_by: str | None = None, source: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """The label history, newest first, with category paths and product names: browsable and exportable."""
    import pandas as pd

    old, new = aliased(Category), aliased(Category)
    statement = (
        select(
            LabelHistory.id,
            LabelHistory.product_id,
            Product.name,
            old.path,
            new.path,
            LabelHistory.action,
            LabelHistory.changed_by,
            LabelHistory.changed_at,
            LabelHistory.source,
            LabelHistory.confidence,
            LabelHistory.reason,
        )
        .join(Product, Product.id == LabelHistory.product_id)
        .outerjoin(old, old.id == LabelHistory.old_category_id)
        .join(new, new.id == LabelHistory.new_category_id)
        .order_by(LabelHistory.id.desc())
    )
    if changed_by:
        statement = statement.where(LabelHistory.changed_by == changed_by)
    if source:
        statement = statement.where(LabelHistory.source == source)
    with session_scope(engine) as session:
        rows = session.execute(statement.limit(limit) if limit else statement).all()
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def changes_per_category(engine: Engine) -> pd.DataFrame:
    """Per top-level category: labels people fixed (review or by hand) away from it and into it (undone changes excluded)."""
    import pandas as pd

    frame = history_frame(engine)
    frame = frame[frame["source"].isin(FIX_SOURCES)]
    relabels = frame[frame["action"] == "relabel"]
    undone = set(frame.loc[frame["action"] == "undo", "reason"].str.extract(r"history row (\d+)")[0].dropna().astype(int))
    relabels = relabels[~relabels["id"].isin(undone)]
    out = relabels["old_category"].str.split(CATEGORY_SEPARATOR).str[0].value_counts().rename("changed from")
    into = relabels["new_category"].str.split(CATEGORY_SEPARATOR).str[0].value_counts().rename("changed to")
    table = pd.concat([out, into], axis=1).fillna(0).astype(int).rename_axis("category").reset_index()
    return table.sort_values(["changed from", "category"], ascending=[False, True]).reset_index(drop=True)
