"""The catalogue's vector indexes for search by meaning and by photo, built from cached embeddings.

- meaning: mean-pooled, L2-normalised MiniLM sentence embeddings of each product's model text;
- photo: the image backbone's pooled features of every photo, centred on the catalogue's mean
  (pooled activations are all positive, so raw cosines crowd near 1; centring spreads them), keyed
  by product, so a product scores as its closest photo.

Embeddings come from the file cache (core.encoders.embedding_store): only new or changed items are computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.catalogue import Catalogue
from core.data.cleaning import model_text
from core.encoders.backbones import DEFAULT_BACKBONE, get_backbone
from core.encoders.embedding_store import EmbeddingStore, text_hash
from core.encoders.features import cached_image_features, image_feature_store, image_features
from core.encoders.text_encoder import DEFAULT_MAX_TOKENS, EMBEDDING_DIM, TEXT_ENCODER_ID
from core.encoders.text_engine import sentence_embeddings
from core.runtime.progress import Progress, StageProgress, for_stage
from core.search.vector_index import ExactIndex, VectorIndex

SENTENCE_KIND = "sentence-embeddings"


def sentence_store(cache_dir: Path) -> EmbeddingStore:
    return EmbeddingStore(cache_dir, kind=SENTENCE_KIND, encoder_id=f"{TEXT_ENCODER_ID}-tokens{DEFAULT_MAX_TOKENS}")


def cached_sentence_embeddings(
    product_ids: Sequence[str], texts: Sequence[str], *, cache_dir: Path, progress: Progress | None = None
) -> np.ndarray:
    """(N, 384) sentence embeddings of model texts, computed once per text and cached."""
    text_of = dict(zip(product_ids, texts))
    return sentence_store(cache_dir).get(
        product_ids,
        [text_hash(text) for text in texts],
        lambda ids: sentence_embeddings([text_of[item] for item in ids]),
        batch_size=512,
        progress=progress,
    )


@dataclass(frozen=True)
class EmbeddingProgress:
    """How much of a catalogue the embedding cache already holds (texts per product, photos per photo)."""

    texts_done: int
    texts_total: int
    photos_done: int
    photos_total: int

    @property
    def complete(self) -> bool:
        return self.texts_done == self.texts_total and self.photos_done == self.photos_total

    @property
    def fraction(self) -> float:
        # Weighted by cost: a photo takes about as long to embed as a text on 2 cores.
        total = self.texts_total + self.photos_total
        return (self.texts_done + self.photos_done) / total if total else 1.0

    def describe(self) -> str:
        return (
            f"{self.texts_done:,} of {self.texts_total:,} texts and {self.photos_done:,} of {self.photos_total:,} photos "
            f"embedded ({self.fraction:.0%})"
        )


def embedding_progress(catalogue: Catalogue, *, cache_dir: Path, backbone_id: str = DEFAULT_BACKBONE) -> EmbeddingProgress:
    """Read from the cache's indexes only: cheap enough for every page run."""
    products, images = catalogue.products, catalogue.images
    missing_texts = sentence_store(cache_dir).missing(
        [product.id for product in products], [text_hash(product.text) for product in products]
    )
    photo_store = image_feature_store(get_backbone(backbone_id), cache_dir)
    missing_photos = photo_store.missing([image.id for image in images], [image.checksum for image in images])
    return EmbeddingProgress(len(products) - missing_texts, len(products), len(images) - missing_photos, len(images))


def query_text_embedding(query: str) -> np.ndarray:
    """A search query as the catalogue's texts are embedded (same cleaning, same encoder)."""
    return sentence_embeddings([model_text("", query)])


@dataclass
class SearchIndexes:
    text: VectorIndex
    photos: VectorIndex
    backbone_id: str
    photo_mean: np.ndarray  # subtracted from query photo features as from the catalogue's

    def text_query(self, query: str) -> np.ndarray:
        return query_text_embedding(query)

    def photo_query(self, photos: Sequence[Image.Image]) -> np.ndarray:
        """Backbone features of query photos, centred like the indexed ones: (n_photos, dim)."""
        return image_features(get_backbone(self.backbone_id), list(photos)) - self.photo_mean


def embed_catalogue(
    catalogue: Catalogue, *, cache_dir: Path, backbone_id: str = DEFAULT_BACKBONE, progress: StageProgress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every product's sentence embedding and every photo's features, from the cache where it holds
    them and computed (and cached, resumably) where it does not: (texts, photos), in catalogue order."""
    products, images = catalogue.products, catalogue.images
    texts = (
        cached_sentence_embeddings(
            [product.id for product in products],
            [product.text for product in products],
            cache_dir=cache_dir,
            progress=for_stage(progress, "text embeddings"),
        )
        if products
        else np.empty((0, EMBEDDING_DIM), np.float32)
    )
    backbone = get_backbone(backbone_id)
    photos = (
        cached_image_features(backbone, images, cache_dir=cache_dir, progress=for_stage(progress, "photo embeddings"))
        if images
        else np.empty((0, backbone.feature_dim), np.float32)
    )
    return texts, photos


def build_search_indexes(
    catalogue: Catalogue, *, cache_dir: Path, backbone_id: str = DEFAULT_BACKBONE, progress: StageProgress | None = None
) -> SearchIndexes:
    products, images = catalogue.products, catalogue.images
    texts, features = embed_catalogue(catalogue, cache_dir=cache_dir, backbone_id=backbone_id, progress=progress)
    backbone = get_backbone(backbone_id)
    mean = features.mean(axis=0) if images else np.zeros(backbone.feature_dim, np.float32)
    features -= mean  # in place: the arrays are ours (read from the cache), and no copy is needed
    return SearchIndexes(
        text=ExactIndex([product.id for product in products], texts, take_ownership=True),
        photos=ExactIndex([image.product_id for image in images], features, take_ownership=True),
        backbone_id=backbone.id,
        photo_mean=mean.astype(np.float32),
    )
