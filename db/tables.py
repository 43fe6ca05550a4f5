"""SQLAlchemy 2.x typed ORM models of the catalogue."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import JSON, CheckConstraint, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.data.cleaning import CATEGORY_SEPARATOR
from core.enums import LabelSource, RunStatus


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Category(Base):
    """A node of the category tree; `path` is the full ` / `-separated path, unique."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(500), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    depth: Mapped[int] = mapped_column(Integer)  # 0 = top level
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)

    parent: Mapped[Category | None] = relationship(remote_side=[id])

    @property
    def parts(self) -> list[str]:
        return self.path.split(CATEGORY_SEPARATOR)

    @property
    def top_level(self) -> str:
        return self.parts[0]


class Product(Base):
    """A listing. `pk` is the row key the full-text index points at; `id` is the listing's id."""

    __tablename__ = "products"
    __table_args__ = (CheckConstraint("price_pence >= 0", name="price_not_negative"),)

    pk: Mapped[int] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(500))
    raw_name: Mapped[str] = mapped_column(String(1000))
    description: Mapped[str] = mapped_column(Text, default="")
    raw_description: Mapped[str] = mapped_column(Text, default="")
    price_pence: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="GBP")
    location: Mapped[str] = mapped_column(String(200), default="", index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    # Bumped on every label change: the optimistic lock reviewers update against.
    label_version: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[str] = mapped_column(String(20), default=LabelSource.IMPORT.value)
    # "active", or "not_a_product" when a reviewer marks a listing as spam: kept, but out of training.
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    category: Mapped[Category] = relationship()
    images: Mapped[list[Image]] = relationship(back_populates="product", cascade="all, delete-orphan", order_by="Image.position")

    @property
    def price(self) -> Decimal:
        return Decimal(self.price_pence) / 100


class Image(Base):
    """A product photo: `file_path` is the cleaned copy (relative to the media folder)."""

    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    file_path: Mapped[str] = mapped_column(String(500))
    original_path: Mapped[str] = mapped_column(String(1000))
    width: Mapped[int] = mapped_column(Integer)  # of the original
    height: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 of the original file
    source_ref: Mapped[str] = mapped_column(String(1000), default="")

    product: Mapped[Product] = relationship(back_populates="images")


class LabelHistory(Base):
    """Every change of a product's category: who, when, why and from which source."""

    __tablename__ = "label_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    old_category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    new_category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(20))  # import | upload | review | manual
    confidence: Mapped[float | None] = mapped_column(Float)
    # relabel | not_a_product | undo: what the row records (old and new category are equal for the last two)
    action: Mapped[str] = mapped_column(String(20), default="relabel", server_default="relabel")

    old_category: Mapped[Category | None] = relationship(foreign_keys=[old_category_id])
    new_category: Mapped[Category] = relationship(foreign_keys=[new_category_id])


class ReviewItem(Base):
    """A product in the labelling review queue: why it is there, and what became of it.

    `score` is the label-quality score (lower = more likely mislabelled); `claimed_by` hands an item
    to one reviewer at a time (a claim lapses after a while, see services.review).
    """

    __tablename__ = "review_queue"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), primary_key=True)
    score: Mapped[float] = mapped_column(Float, index=True)
    given_label: Mapped[str] = mapped_column(String(200))  # top-level label when scored
    suggested_label: Mapped[str] = mapped_column(String(200))
    top: Mapped[list] = mapped_column(JSON)  # [[category, probability], ...] best first, 3 entries
    is_issue: Mapped[bool] = mapped_column(default=False)  # cleanlab's find_label_issues flagged it
    prediction_set: Mapped[list | None] = mapped_column(JSON)  # an upload's conformal set when the model was not sure
    source: Mapped[str] = mapped_column(String(20))  # cross-validation | upload | evaluation
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending | kept | relabelled | not_a_product
    reviewed_by: Mapped[str | None] = mapped_column(String(100))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_version: Mapped[int | None] = mapped_column(Integer)  # the product's label_version after the decision
    history_id: Mapped[int | None] = mapped_column(ForeignKey("label_history.id"))  # the decision's history row
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    product: Mapped[Product] = relationship()


class TrainingRun(Base):
    """One `python -m core train` run: what was trained, how, on which split, and how it went."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_kind: Mapped[str] = mapped_column(String(20))  # image | text | combined
    encoder_ids: Mapped[dict] = mapped_column(JSON)
    hyperparameters: Mapped[dict] = mapped_column(JSON)
    split_seed: Mapped[int] = mapped_column(Integer)
    labels: Mapped[list] = mapped_column(JSON)  # class names, index order
    data_fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.RUNNING.value)  # a core.enums.RunStatus
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_val_accuracy: Mapped[float | None] = mapped_column(Float)
    test_metrics: Mapped[dict | None] = mapped_column(JSON)
    checkpoint_path: Mapped[str | None] = mapped_column(String(1000))
    note: Mapped[str] = mapped_column(Text, default="")
    # The training process, so that a run whose process was killed (SIGKILL, power loss) is found.
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))

    epochs: Mapped[list[RunEpoch]] = relationship(back_populates="run", cascade="all, delete-orphan", order_by="RunEpoch.epoch")
    split: Mapped[list[RunSplit]] = relationship(cascade="all, delete-orphan")


class RunEpoch(Base):
    __tablename__ = "run_epochs"

    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float] = mapped_column(Float)
    train_accuracy: Mapped[float] = mapped_column(Float)
    val_loss: Mapped[float] = mapped_column(Float)
    val_accuracy: Mapped[float] = mapped_column(Float)
    learning_rate: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)

    run: Mapped[TrainingRun] = relationship(back_populates="epochs")


class RunSplit(Base):
    """Which side of the run's split each product fell on (stored, so the split can be checked)."""

    __tablename__ = "run_splits"

    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    part: Mapped[str] = mapped_column(String(5))  # train | val | test


class RunPrediction(Base):
    """The best checkpoint's predictions on validation and test items, with all probabilities."""

    __tablename__ = "run_predictions"

    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # image id (image model) or product id
    product_id: Mapped[str] = mapped_column(String(64), index=True)
    part: Mapped[str] = mapped_column(String(5))
    true_label: Mapped[int] = mapped_column(Integer)
    predicted_label: Mapped[int] = mapped_column(Integer)
    probabilities: Mapped[list] = mapped_column(JSON)


class ApiKey(Base):
    """A key for the HTTP API's writes: only its SHA-256 is stored; the key is shown once, when made."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)  # who holds it: written as `changed_by` with their changes
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # the key's first characters, to tell keys apart in a list
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
