"""SQLAlchemy 2.x typed ORM models of the catalogue."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.cleaning import CATEGORY_SEPARATOR


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
    source: Mapped[str] = mapped_column(String(20), default="import")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    category: Mapped[Category] = relationship()
    images: Mapped[list[Image]] = relationship(
        back_populates="product", cascade="all, delete-orphan", order_by="Image.position"
    )

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
    source: Mapped[str] = mapped_column(String(20))  # import | upload | review
    confidence: Mapped[float | None] = mapped_column(Float)

    old_category: Mapped[Category | None] = relationship(foreign_keys=[old_category_id])
    new_category: Mapped[Category] = relationship(foreign_keys=[new_category_id])
