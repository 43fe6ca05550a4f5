"""Read queries over the catalogue; every one goes through SQLAlchemy with bound parameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Select, func, null, or_, select
from sqlalchemy.orm import Session, selectinload

from core.data.catalogue import Catalogue, ImageRecord, ProductRecord
from core.data.cleaning import CATEGORY_SEPARATOR
from db.tables import Category, Image, Product

if TYPE_CHECKING:  # pandas takes half a second to import: only the functions that build frames load it
    import pandas as pd


@dataclass(frozen=True)
class ProductFilters:
    """`category` is any category path (a top level, or deeper): products at or below it match, whatever the
    letter case (on every backend: SQLite's LIKE ignores case where PostgreSQL's does not)."""

    category: str | None = None
    min_price: Decimal | float | None = None
    max_price: Decimal | float | None = None
    location: str | None = None
    category_ids: tuple[int, ...] | None = None  # the category's subtree, once looked up (`resolved`)

    @property
    def is_empty(self) -> bool:
        return not self.category and not self._cuts_rows

    @property
    def _cuts_rows(self) -> bool:
        """A price range or a location: filters on each product's own fields."""
        return self.min_price is not None or self.max_price is not None or bool((self.location or "").strip())

    def subtree_select(self) -> Select[Any]:
        """The ids of the category and of every category below it."""
        path, wanted = func.lower(Category.path), (self.category or "").lower()
        return select(Category.id).where(or_(path == wanted, path.startswith(wanted + CATEGORY_SEPARATOR, autoescape=True)))

    def top_level_select(self) -> Select[Any]:
        """The id of the top-level category whose path is the category's first part (a subtree's paths all
        start with it): no row without a category, or for an unknown top level."""
        first_part = (self.category or "").split(CATEGORY_SEPARATOR)[0].lower()
        return select(Category.id).where(Category.depth == 0, func.lower(Category.path) == first_part)

    def resolved(self, connection: Session | Connection) -> ProductFilters:
        """These filters with the category's subtree looked up: a full-text or vector scan then filters on a
        list of ids once, where PostgreSQL's planner would repeat the scan for each category of the subtree."""
        if not self.category or self.category_ids is not None:
            return self
        return replace(self, category_ids=tuple(connection.scalars(self.subtree_select())))

    @property
    def is_top_level(self) -> bool:
        """The category is a whole top level (no deeper part), so its subtree is that top level's products."""
        return bool(self.category) and CATEGORY_SEPARATOR.strip() not in (self.category or "")

    @property
    def narrows_top_level(self) -> bool:
        """The filters keep part of a top level's products: a deeper category, a price range or a location."""
        return (bool(self.category) and not self.is_top_level) or self._cuts_rows

    def top_level_columns(self) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        """PostgreSQL, for a statement that looks them up beside other things: the category's top level's id,
        and a category below a top level's subtree as an array of ids (NULL when not needed); see by_top_level."""
        top_id: ColumnElement[Any] = self.top_level_select().scalar_subquery() if self.category else null()
        deeper = bool(self.category) and not self.is_top_level and self.category_ids is None
        subtree = self.subtree_select().subquery("subtree")
        return top_id.label("top_id"), (select(func.array_agg(subtree.c.id)).scalar_subquery() if deeper else null()).label("subtree")

    def by_top_level(self, top_id: int | None, subtree: Sequence[int] | None) -> tuple[ProductFilters, int | None] | None:
        """These filters as a search within the top level that top_level_columns found: (filters, top-level id),
        the category left to the top level's id when it is a whole top level (its rows carry it, and the top level's
        own indexes hold them), a deeper category's subtree looked up; None when no product can match."""
        if not self.category:
            return self, None
        subtree_ids = self.category_ids if self.is_top_level or self.category_ids is not None else tuple(subtree or ())
        if top_id is None or subtree_ids == ():
            return None
        if self.is_top_level:
            return replace(self, category=None, category_ids=None), int(top_id)
        return replace(self, category_ids=subtree_ids), int(top_id)

    def apply(self, statement: Select[Any], *, price_index: bool = True) -> Select[Any]:
        """`statement` with the filters; `price_index=False` writes the price range as an expression no index
        serves, so that the planner reads another index (a category's own) and checks the price on its rows."""
        if self.category_ids is not None:
            statement = statement.where(Product.category_id.in_(self.category_ids))
        elif self.category:
            statement = statement.where(Product.category_id.in_(self.subtree_select().scalar_subquery()))
        price = Product.price_pence if price_index else Product.price_pence + 0
        if self.min_price is not None:
            statement = statement.where(price >= round(Decimal(str(self.min_price)) * 100))
        if self.max_price is not None:
            statement = statement.where(price <= round(Decimal(str(self.max_price)) * 100))
        if self.location and self.location.strip():
            statement = statement.where(Product.location.icontains(self.location.strip(), autoescape=True))
        return statement


@dataclass(frozen=True)
class ProductView:
    """A product as pages and the CLI show it: plain values, safe to cache and pickle."""

    id: str
    name: str
    category: str
    price: Decimal
    location: str
    description: str
    image_paths: tuple[str, ...]  # relative to the media folder, in photo order
    source: str
    label_version: int = 1  # what a label fix is checked against (optimistic lock)

    @property
    def top_level(self) -> str:
        return self.category.split(CATEGORY_SEPARATOR)[0]

    @classmethod
    def of(cls, product: Product) -> ProductView:
        return cls(
            id=product.id,
            name=product.name,
            category=product.category.path,
            price=product.price,
            location=product.location,
            description=product.description,
            image_paths=tuple(image.file_path for image in product.images),
            source=product.source,
            label_version=product.label_version,
        )


@dataclass(frozen=True)
class ProductPage:
    products: list[ProductView]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def catalogue_counts(session: Session) -> tuple[int, int]:
    products = session.scalar(select(func.count()).select_from(Product)) or 0
    images = session.scalar(select(func.count()).select_from(Image)) or 0
    return products, images


def category_paths(session: Session, *, parent: str | None = None) -> list[str]:
    """Top-level paths, or the direct children of `parent`."""
    statement = select(Category.path).order_by(Category.path)
    if parent is None:
        statement = statement.where(Category.depth == 0)
    else:
        statement = statement.where(Category.parent_id.in_(select(Category.id).where(Category.path == parent)))
    return list(session.scalars(statement))


def all_category_paths(session: Session) -> list[str]:
    return list(session.scalars(select(Category.path).order_by(Category.path)))


def browse_products(session: Session, *, filters: ProductFilters = ProductFilters(), page: int = 1, page_size: int = 24) -> ProductPage:
    """One page of products, newest import order, with their category and photos loaded."""
    base = filters.apply(select(Product).join(Product.category))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    page = max(1, min(page, max(1, -(-total // page_size))))
    statement = (
        base.options(selectinload(Product.images), selectinload(Product.category))
        .order_by(Product.pk)
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    return ProductPage([ProductView.of(product) for product in session.scalars(statement)], total, page, page_size)


def get_product(session: Session, product_id: str) -> ProductView | None:
    statement = select(Product).where(Product.id == product_id).options(selectinload(Product.images), selectinload(Product.category))
    product = session.scalar(statement)
    return None if product is None else ProductView.of(product)


def products_frame(session: Session) -> pd.DataFrame:
    """One row per product for the dashboard: category levels, price, location, photo count."""
    import pandas as pd

    photo_counts = select(Image.product_id, func.count().label("photos")).group_by(Image.product_id).subquery()
    statement = (
        select(
            Product.id,
            Product.name,
            Category.path.label("category"),
            Product.price_pence,
            Product.location,
            func.coalesce(photo_counts.c.photos, 0).label("photos"),
        )
        .join(Product.category)
        .outerjoin(photo_counts, photo_counts.c.product_id == Product.id)
    )
    frame = pd.DataFrame(session.execute(statement).all(), columns=["id", "name", "category", "price_pence", "location", "photos"])
    levels = frame["category"].str.split(CATEGORY_SEPARATOR, regex=False)
    frame["top"] = levels.str[0]
    frame["sub"] = levels.str[1].fillna("(none)")
    frame["price"] = frame["price_pence"] / 100
    return frame


def training_catalogue(session: Session, *, media_dir: Path) -> Catalogue:
    """Every product with its current (possibly reviewed) label, and its cleaned photos; listings a
    reviewer marked as not a product are left out."""
    rows = session.execute(
        select(Product.id, Product.name, Product.description, Category.path)
        .join(Product.category)
        .where(Product.status == "active")
        .order_by(Product.pk)
    )
    products = [ProductRecord.of(product_id, name, description, path) for product_id, name, description, path in rows]
    images = [
        ImageRecord(image_id, product_id, media_dir / file_path, checksum)
        for image_id, product_id, file_path, checksum in session.execute(
            select(Image.id, Image.product_id, Image.file_path, Image.checksum).order_by(Image.product_id, Image.position)
        )
    ]
    kept = {product.id for product in products}
    return Catalogue(products, [image for image in images if image.product_id in kept])


def listings_frame(session: Session) -> pd.DataFrame:
    """id, cleaned name and description, location and price (£) of every product: the price model's input."""
    import pandas as pd

    rows = session.execute(select(Product.id, Product.name, Product.description, Product.location, Product.price_pence))
    frame = pd.DataFrame(rows.all(), columns=["id", "name", "description", "location", "price_pence"])
    frame["price"] = frame.pop("price_pence") / 100
    return frame


def filtered_product_ids(session: Session, filters: ProductFilters) -> set[str] | None:
    """Ids of the products the filters let through; None when no filter is set (every product)."""
    if filters.is_empty:
        return None
    return set(session.scalars(filters.apply(select(Product.id).join(Product.category))))


def products_by_ids(session: Session, product_ids: list[str]) -> list[ProductView]:
    """The products with these ids, in the order given (ids not in the catalogue are left out)."""
    if not product_ids:
        return []
    statement = select(Product).where(Product.id.in_(product_ids)).options(selectinload(Product.images), selectinload(Product.category))
    found = {product.id: ProductView.of(product) for product in session.scalars(statement)}
    return [found[product_id] for product_id in product_ids if product_id in found]


def catalogue_revision(session: Session) -> str:
    """Changes whenever a product or photo is added or removed, or a label changes: a cache key."""
    row = session.execute(
        select(func.count(), func.max(Product.pk), func.coalesce(func.sum(Product.label_version), 0)).select_from(Product)
    ).one()
    images = session.scalar(select(func.count()).select_from(Image)) or 0
    return f"{row[0]}-{row[1] or 0}-{row[2]}-{images}"
