"""The catalogue's vector indexes for search by meaning and by photo, built from cached embeddings.

- meaning: mean-pooled, L2-normalised MiniLM sentence embeddings of each product's model text;
- photo: the image backbone's pooled features of every photo, centred on the catalogue's mean
  (pooled activations are all positive, so raw cosines crowd near 1; centring spreads them), keyed
  by product, so a product scores as its closest photo.

Embeddings come from the file cache (core.embeddings): only new or changed items are computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.backbones import DEFAULT_BACKBONE, get_backbone
from core.cleaning import model_text
from core.dataset import Catalogue
from core.embeddings import EmbeddingStore, text_hash
from core.features import cached_image_features, image_features, load_text_encoder
from core.text_encoder import DEFAULT_MAX_TOKENS, TEXT_ENCODER_ID
from core.vector_index import ExactIndex

Progress = Callable[[str, int, int], None]
SENTENCE_KIND = "sentence-embeddings"


def cached_sentence_embeddings(product_ids: Sequence[str], texts: Sequence[str], *, cache_dir: Path,
                               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(N, 384) sentence embeddings of model texts, computed once per text and cached."""
    text_of = dict(zip(product_ids, texts))
    encoder = load_text_encoder(DEFAULT_MAX_TOKENS)
    store = EmbeddingStore(cache_dir, kind=SENTENCE_KIND, encoder_id=f"{TEXT_ENCODER_ID}-tokens{DEFAULT_MAX_TOKENS}")
    return store.get(product_ids, [text_hash(text) for text in texts],
                     lambda ids: encoder.encode_sentences([text_of[item] for item in ids]).numpy(), batch_size=512, progress=progress)


def query_text_embedding(query: str) -> np.ndarray:
    """A search query as the catalogue's texts are embedded (same cleaning, same encoder)."""
    return load_text_encoder(DEFAULT_MAX_TOKENS).encode_sentences([model_text("", query)]).numpy()


@dataclass
class SearchIndexes:
    text: ExactIndex
    photos: ExactIndex
    backbone_id: str
    photo_mean: np.ndarray  # subtracted from query photo features as from the catalogue's

    def photo_query(self, photos: Sequence[Image.Image]) -> np.ndarray:
        """Backbone features of query photos, centred like the indexed ones: (n_photos, dim)."""
        return image_features(get_backbone(self.backbone_id), list(photos)) - self.photo_mean


def build_search_indexes(catalogue: Catalogue, *, cache_dir: Path, backbone_id: str = DEFAULT_BACKBONE,
                         progress: Progress | None = None) -> SearchIndexes:
    products, images = catalogue.products, catalogue.images
    texts = cached_sentence_embeddings([product.id for product in products], [product.text for product in products],
                                       cache_dir=cache_dir, progress=_stage(progress, "text embeddings"))
    backbone = get_backbone(backbone_id)
    if images:
        features = cached_image_features(backbone, [image.id for image in images], [image.checksum for image in images],
                                         [image.path for image in images], cache_dir=cache_dir, progress=_stage(progress, "photo embeddings"))
        mean = features.mean(axis=0)
    else:
        features, mean = np.empty((0, backbone.feature_dim), np.float32), np.zeros(backbone.feature_dim, np.float32)
    return SearchIndexes(
        text=ExactIndex([product.id for product in products], texts if len(products) else np.empty((0, 384), np.float32)),
        photos=ExactIndex([image.product_id for image in images], features - mean),
        backbone_id=backbone.id,
        photo_mean=mean.astype(np.float32),
    )


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    return None if progress is None else (lambda done, total: progress(stage, done, total))
