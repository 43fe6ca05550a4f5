"""Bringing a catalogue in and readying it for the models: importing a folder, the catalogue as the
models see it, and embedding it for search by meaning and by photo."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from core.data.catalogue import Catalogue
from core.runtime.progress import StageProgress
from core.settings import Settings
from db import queries
from db.importer import CatalogueFormatError, CatalogueWriteError, ImportReport, import_catalogue
from db.queries import ProductFilters, ProductPage, ProductView
from db.session import make_engine, session_scope

__all__ = [
    "CatalogueFormatError",
    "CatalogueWriteError",
    "ImportReport",
    "ProductFilters",
    "ProductPage",
    "ProductView",
    "browse",
    "categories",
    "connect",
    "embed_for_search",
    "import_folder",
    "models_catalogue",
    "product",
]


def connect(database_url: str) -> Engine:
    """An engine for the catalogue's database, its schema created or brought up to date."""
    return make_engine(database_url)


def import_folder(
    folder: Path, *, engine: Engine, settings: Settings, image_size: int | None = None, progress: StageProgress | None = None
) -> ImportReport:
    """Import or refresh the catalogue from `folder` into the database, its photos cleaned into the
    settings' media folder. Raises CatalogueFormatError (not a catalogue folder; nothing written) or
    CatalogueWriteError (the database refused the batch; nothing written)."""
    return import_catalogue(
        folder, engine=engine, media_dir=settings.media_dir, image_size=image_size or settings.image_size, progress=progress
    )


def models_catalogue(engine: Engine, *, settings: Settings) -> Catalogue:
    """The catalogue as the models train, evaluate and search on it (current labels, cleaned photos)."""
    with session_scope(engine) as session:
        return queries.training_catalogue(session, media_dir=settings.media_dir)


def embed_for_search(engine: Engine, *, settings: Settings, progress: StageProgress | None = None) -> str:
    """Embed every text and photo the catalogue's vectors lack (resumable: through the cache, and on PostgreSQL
    into the catalogue); returns how far the embeddings now are, in words."""
    from services.catalogue_vectors import catalogue_embedding_progress, embed_for_search

    catalogue = models_catalogue(engine, settings=settings)
    cache_dir = settings.cache_dir
    embed_for_search(engine, catalogue, cache_dir=cache_dir, progress=progress)
    return catalogue_embedding_progress(engine, catalogue, cache_dir=cache_dir).describe()


def browse(engine: Engine, *, filters: ProductFilters = ProductFilters(), page: int = 1, page_size: int = 24) -> ProductPage:
    """One page of products (a page past the last is the last)."""
    with session_scope(engine) as session:
        return queries.browse_products(session, filters=filters, page=page, page_size=page_size)


def product(engine: Engine, product_id: str) -> ProductView | None:
    with session_scope(engine) as session:
        return queries.get_product(session, product_id)


def categories(engine: Engine) -> list[str]:
    """Every category path in the catalogue, top levels and deeper, in order."""
    with session_scope(engine) as session:
        return queries.all_category_paths(session)


def catalogue_size(engine: Engine) -> tuple[int, int]:
    """(products, photos): also a check that the database answers."""
    with session_scope(engine) as session:
        return queries.catalogue_counts(session)
