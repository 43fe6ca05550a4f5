"""Encoder outputs for many items at once: batched, photos decoded while the model runs, in the
machine's precision (core.runtime.compute) on the fastest engine it has (core.encoders.image_engine), cached on disk.

Image features: pooled backbone features per photo. Text states: the token embeddings entering
the text model (after `layer` encoder layers), zero-padded to `max_tokens`; padding rows are all
zero, which is how `token_mask` recovers the mask.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.data.catalogue import ImageRecord
from core.data.images import ImageError, open_image
from core.encoders.backbones import ImageBackbone
from core.encoders.embedding_store import EmbeddingStore, text_hash
from core.encoders.image_engine import feature_extractor, load_splittable_backbone
from core.encoders.text_encoder import TextEncoder, batches_by_length
from core.runtime.compute import autocast, decode_workers
from core.runtime.progress import Progress

ImageSource = Path | Image.Image
Decoded = tuple[np.ndarray, list[str | None]]  # a batch's pixels, and per photo why it could not be read (or None)


@lru_cache(maxsize=2)
def load_text_encoder(max_tokens: int = 128) -> TextEncoder:
    return TextEncoder(max_tokens=max_tokens)


def image_features(
    backbone: ImageBackbone,
    sources: Sequence[ImageSource],
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
    problems: list[str] | None = None,
) -> np.ndarray:
    """(N, feature_dim) float32 pooled features; photos decoded in a thread while the model runs.

    A photo that cannot be read raises ImageError, unless `problems` is given: then its row is NaN
    and its one-line reason is appended there, and the other photos go on."""
    _, forward = feature_extractor(backbone.id)
    return _run_on_photos(backbone, sources, forward, batch_size=batch_size, progress=progress, problems=problems)


def image_maps(
    backbone: ImageBackbone,
    sources: Sequence[ImageSource],
    *,
    tail_blocks: int,
    batch_size: int = 32,
    progress: Progress | None = None,
    problems: list[str] | None = None,
) -> np.ndarray:
    """(N, C, h, w) float32 maps of the frozen blocks, the input of a fine-tuned tail of `tail_blocks`
    (`problems` as for image_features)."""
    model = load_splittable_backbone(backbone.id)

    def forward(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), autocast():
            return (
                model.lower(torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last), tail_blocks=tail_blocks).float().numpy()
            )

    return _run_on_photos(backbone, sources, forward, batch_size=batch_size, progress=progress, problems=problems)


def _run_on_photos(
    backbone: ImageBackbone,
    sources: Sequence[ImageSource],
    forward: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int,
    progress: Progress | None,
    problems: list[str] | None = None,
) -> np.ndarray:
    blank = np.zeros((3, backbone.input_size, backbone.input_size), np.uint8)

    def decode(source: ImageSource) -> tuple[np.ndarray, str | None]:
        if isinstance(source, Image.Image):
            return backbone.pixels(source), None
        try:
            return backbone.pixels(open_image(source, name=Path(source).name)), None
        except ImageError as error:
            if problems is None:
                raise
            return blank, str(error)

    def decode_batch(batch: Sequence[ImageSource]) -> Decoded:
        decoded = [decode(source) for source in batch]
        return np.stack([pixels for pixels, _ in decoded]), [problem for _, problem in decoded]

    outputs: list[np.ndarray] = []
    batches = [sources[start : start + batch_size] for start in range(0, len(sources), batch_size)]
    done = 0
    for pixels, batch_problems in _prefetched(batches, decode_batch):
        output = np.asarray(forward(backbone.normalise(pixels)), dtype=np.float32)
        for row, problem in enumerate(batch_problems):
            if problem is not None and problems is not None:
                output[row] = np.nan
                problems.append(problem)
        outputs.append(output)
        done += len(pixels)
        if progress:
            progress(done, len(sources))
    return np.concatenate(outputs) if outputs else np.empty((0, backbone.feature_dim), np.float32)


def _prefetched(
    batches: Sequence[Sequence[ImageSource]], decode: Callable[[Sequence[ImageSource]], Decoded], *, depth: int = 2
) -> Iterator[Decoded]:
    """Decoded batches in order, at most `depth` decoded ahead of the model (memory stays bounded).
    A single batch (one listing's photos) is decoded here: a thread would only add its start-up."""
    if len(batches) == 1:
        yield decode(batches[0])
        return
    with ThreadPoolExecutor(max_workers=decode_workers()) as pool:
        pending: deque[Future[Decoded]] = deque()
        for batch in batches:
            pending.append(pool.submit(decode, batch))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def text_states(
    texts: Sequence[str], *, layer: int, max_tokens: int = 128, batch_size: int = 32, progress: Progress | None = None
) -> np.ndarray:
    """(N, max_tokens, 384) float16 token states after `layer` encoder layers, zero-padded."""
    encoder = load_text_encoder(max_tokens)
    states = np.zeros((len(texts), max_tokens, encoder.dim), np.float16)
    done = 0
    for rows in batches_by_length(texts, batch_size):
        batch = encoder.encode([texts[row] for row in rows], layer=layer)
        masked = batch.embeddings * batch.attention_mask.unsqueeze(-1)
        states[rows, : masked.shape[1]] = masked.numpy().astype(np.float16)
        done += len(rows)
        if progress:
            progress(done, len(texts))
    return states


def token_mask(states: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(states)
    return tensor.abs().amax(dim=-1) > 0


def image_feature_store(backbone: ImageBackbone, cache_dir: Path) -> EmbeddingStore:
    return EmbeddingStore(cache_dir, kind="image-features", encoder_id=backbone.id)


def cached_image_features(
    backbone: ImageBackbone, images: Sequence[ImageRecord], *, cache_dir: Path, progress: Progress | None = None
) -> np.ndarray:
    """Pooled features of catalogue photos, from the cache where their checksum matches (computed otherwise)."""
    path_of = {image.id: image.path for image in images}
    return (
        image_feature_store(backbone, cache_dir)
        .get(
            [image.id for image in images],
            [image.checksum for image in images],
            lambda ids: image_features(backbone, [path_of[item] for item in ids]).astype(np.float16),
            batch_size=512,
            progress=progress,
        )
        .astype(np.float32)
    )


def cached_text_states(
    product_ids: Sequence[str], texts: Sequence[str], *, layer: int, max_tokens: int, cache_dir: Path, progress: Progress | None = None
) -> np.ndarray:
    text_of = dict(zip(product_ids, texts))
    encoder_id = f"{TextEncoder.id}-layer{layer}-tokens{max_tokens}"
    store = EmbeddingStore(cache_dir, kind="text-states", encoder_id=encoder_id)
    return store.get(
        product_ids,
        [text_hash(text) for text in texts],
        lambda ids: text_states([text_of[item] for item in ids], layer=layer, max_tokens=max_tokens),
        batch_size=512,
        progress=progress,
    )


def cached_image_maps(
    backbone: ImageBackbone, images: Sequence[ImageRecord], *, tail_blocks: int, cache_dir: Path, progress: Progress | None = None
) -> np.ndarray:
    """The frozen blocks' maps of catalogue photos, for fine-tuning the last `tail_blocks`, cached as the features are."""
    path_of = {image.id: image.path for image in images}
    store = EmbeddingStore(cache_dir, kind="image-maps", encoder_id=f"{backbone.id}-tail{tail_blocks}")
    return store.get(
        [image.id for image in images],
        [image.checksum for image in images],
        lambda ids: image_maps(backbone, [path_of[item] for item in ids], tail_blocks=tail_blocks).astype(np.float16),
        batch_size=512,
        progress=progress,
    )
