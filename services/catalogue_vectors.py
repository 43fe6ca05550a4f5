"""The catalogue's vector indexes on each backend. SQLite: the in-memory exact index over this
instance's embedding cache. PostgreSQL: the vectors stored in the catalogue (db.vectors), shared by
every instance, searched by pgvector in SQL where the server has it, else read into the exact index.
The embedding job computes what the catalogue lacks through the same file cache on both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from core.data.catalogue import Catalogue
from core.encoders.backbones import DEFAULT_BACKBONE, get_backbone
from core.encoders.embedding_store import text_hash
from core.encoders.text_encoder import DEFAULT_MAX_TOKENS, EMBEDDING_DIM, TEXT_ENCODER_ID
from core.runtime.progress import StageProgress
from core.search.indexes import EmbeddingProgress, SearchIndexes, build_search_indexes, embed_catalogue, embedding_progress
from core.search.vector_index import ExactIndex, VectorIndex, normalise_rows
from db import vectors
from db.session import after_bulk_write

TEXT_SPACE = f"text:{TEXT_ENCODER_ID}-tokens{DEFAULT_MAX_TOKENS}"


def photo_space(backbone_id: str) -> str:
    return f"photo:{backbone_id}"


def stores_vectors(engine: Engine) -> bool:
    """Whether the catalogue itself holds the vectors (PostgreSQL) or each instance's cache does (SQLite)."""
    return engine.dialect.name == "postgresql"


def vector_search_note(engine: Engine) -> str:
    """How this catalogue searches by meaning and photo, for `info` and the app."""
    if not stores_vectors(engine):
        return "in memory, exact (SQLite: vectors in this instance's cache)"
    if vectors.uses_pgvector(engine):
        return "pgvector HNSW in the database (vectors shared by every instance)"
    return "in memory, exact: the server has no pgvector extension (vectors shared in the database as real[])"


def _stored(engine: Engine, backbone_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """item id -> source hash of the stored text vectors, and of the stored photo vectors."""
    return vectors.stored_hashes(engine, TEXT_SPACE), vectors.stored_hashes(engine, photo_space(backbone_id))


def _missing(catalogue: Catalogue, texts: dict[str, str], photos: dict[str, str]) -> Catalogue:
    """The part of the catalogue whose stored vectors (`texts`, `photos`: see `_stored`) are missing or stale."""
    return Catalogue(
        [product for product in catalogue.products if texts.get(product.id) != text_hash(product.text)],
        [image for image in catalogue.images if photos.get(image.id) != image.checksum],
    )


def catalogue_embedding_progress(
    engine: Engine, catalogue: Catalogue, *, cache_dir: Path, backbone_id: str = DEFAULT_BACKBONE
) -> EmbeddingProgress:
    if not stores_vectors(engine):
        return embedding_progress(catalogue, cache_dir=cache_dir, backbone_id=backbone_id)
    missing = _missing(catalogue, *_stored(engine, get_backbone(backbone_id).id))
    products, images = len(catalogue.products), len(catalogue.images)
    return EmbeddingProgress(products - len(missing.products), products, images - len(missing.images), images)


def embed_into_catalogue(
    engine: Engine, catalogue: Catalogue, *, cache_dir: Path, backbone_id: str = DEFAULT_BACKBONE, progress: StageProgress | None = None
) -> None:
    """Compute (through the cache) and store the vectors the catalogue lacks; drop those of photos it no longer has."""
    backbone = get_backbone(backbone_id)
    space = photo_space(backbone.id)
    stored_texts, stored_photos = _stored(engine, backbone.id)
    missing = _missing(catalogue, stored_texts, stored_photos)
    texts, photos = embed_catalogue(missing, cache_dir=cache_dir, backbone_id=backbone.id, progress=progress)
    if len(texts):
        ids = [product.id for product in missing.products]
        hashes = [text_hash(product.text) for product in missing.products]
        vectors.write_vectors(engine, TEXT_SPACE, item_ids=ids, product_ids=ids, hashes=hashes, vectors=normalise_rows(texts))
    if len(photos):
        centre = vectors.space_centre(engine, space, proposed=photos.mean(axis=0))
        assert centre is not None
        vectors.write_vectors(
            engine,
            space,
            item_ids=[image.id for image in missing.images],
            product_ids=[image.product_id for image in missing.images],
            hashes=[image.checksum for image in missing.images],
            vectors=normalise_rows(photos - centre),
        )
    gone = set(stored_photos) - {image.id for image in catalogue.images}
    if gone:
        vectors.delete_vectors(engine, space, gone)
    if len(texts) or len(photos) or gone:
        after_bulk_write(engine, (vectors.VECTORS_TABLE,))
    if vectors.uses_pgvector(engine):
        vectors.ensure_vector_indexes(engine, TEXT_SPACE, EMBEDDING_DIM)
        vectors.ensure_vector_indexes(engine, space, backbone.feature_dim)


def embed_for_search(engine: Engine, catalogue: Catalogue, *, cache_dir: Path, progress: StageProgress | None = None) -> None:
    """Embed whatever of `catalogue` search lacks, resumably: into the cache on SQLite, through it into the
    catalogue on PostgreSQL."""
    if stores_vectors(engine):
        embed_into_catalogue(engine, catalogue, cache_dir=cache_dir, progress=progress)
    else:
        embed_catalogue(catalogue, cache_dir=cache_dir, progress=progress)


def catalogue_indexes(engine: Engine, catalogue: Catalogue, *, cache_dir: Path, backbone_id: str = DEFAULT_BACKBONE) -> SearchIndexes:
    """The indexes search by meaning and by photo use; on PostgreSQL whatever vectors are missing are stored first."""
    if not stores_vectors(engine):
        return build_search_indexes(catalogue, cache_dir=cache_dir, backbone_id=backbone_id)
    backbone = get_backbone(backbone_id)
    space = photo_space(backbone.id)
    embed_into_catalogue(engine, catalogue, cache_dir=cache_dir, backbone_id=backbone.id)
    centre = vectors.space_centre(engine, space)
    text_index: VectorIndex
    photo_index: VectorIndex
    if vectors.uses_pgvector(engine):
        text_index = vectors.StoredVectorIndex(engine, TEXT_SPACE, EMBEDDING_DIM)
        photo_index = vectors.StoredVectorIndex(engine, space, backbone.feature_dim)
    else:
        text_index = ExactIndex(*vectors.read_vectors(engine, TEXT_SPACE, dim=EMBEDDING_DIM), take_ownership=True)
        photo_index = ExactIndex(*vectors.read_vectors(engine, space, dim=backbone.feature_dim), take_ownership=True)
    return SearchIndexes(
        text=text_index,
        photos=photo_index,
        backbone_id=backbone.id,
        photo_mean=centre if centre is not None else np.zeros(backbone.feature_dim, np.float32),
    )
