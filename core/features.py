"""Encoder outputs for many items at once: batched, overlapped decoding, bf16, cached on disk.

Image features: pooled backbone features per photo. Text states: the token embeddings entering
the text model (after `layer` encoder layers), zero-padded to `max_tokens`; padding rows are all
zero, which is how `token_mask` recovers the mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.backbones import ImageBackbone, get_backbone
from core.embeddings import EmbeddingStore, text_hash
from core.images import open_image
from core.text_encoder import TextEncoder

Progress = Callable[[int, int], None]
ImageSource = Path | Image.Image


@lru_cache(maxsize=4)
def load_backbone(backbone_id: str) -> torch.nn.Module:
    """One loaded backbone per process (channels_last: faster convolutions on the CPU)."""
    return get_backbone(backbone_id).load().to(memory_format=torch.channels_last)


@lru_cache(maxsize=2)
def load_text_encoder(max_tokens: int = 128) -> TextEncoder:
    return TextEncoder(max_tokens=max_tokens)


def image_features(
    backbone: ImageBackbone,
    sources: Sequence[ImageSource],
    *,
    batch_size: int = 32,
    workers: int = 2,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, feature_dim) float32 pooled features; photos decoded in threads while the model runs."""
    model = load_backbone(backbone.id)
    return _run_on_photos(backbone, sources, model, batch_size=batch_size, workers=workers, progress=progress)


def image_maps(
    backbone: ImageBackbone,
    sources: Sequence[ImageSource],
    *,
    tail_blocks: int,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, C, h, w) float32 maps of the frozen blocks, the input of a fine-tuned tail of `tail_blocks`."""
    model = load_backbone(backbone.id)
    return _run_on_photos(backbone, sources, lambda pixels: model.lower(pixels, tail_blocks=tail_blocks),
                          batch_size=batch_size, workers=2, progress=progress)


def _run_on_photos(backbone: ImageBackbone, sources: Sequence[ImageSource], forward: Callable[[torch.Tensor], torch.Tensor], *,
                   batch_size: int, workers: int, progress: Progress | None) -> np.ndarray:
    transform = backbone.transforms()

    def prepare(source: ImageSource) -> torch.Tensor:
        image = source if isinstance(source, Image.Image) else open_image(source)
        return transform(image)

    outputs: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        batches = [sources[start : start + batch_size] for start in range(0, len(sources), batch_size)]
        done = 0
        for pixels in pool.map(lambda batch: torch.stack([prepare(source) for source in batch]), batches):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                outputs.append(forward(pixels.contiguous(memory_format=torch.channels_last)).float().numpy())
            done += len(pixels)
            if progress:
                progress(done, len(sources))
    return np.concatenate(outputs) if outputs else np.empty((0, backbone.feature_dim), np.float32)


def text_states(
    texts: Sequence[str],
    *,
    layer: int,
    max_tokens: int = 128,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, max_tokens, 384) float16 token states after `layer` encoder layers, zero-padded."""
    encoder = load_text_encoder(max_tokens)
    states = np.zeros((len(texts), max_tokens, encoder.dim), np.float16)
    order = np.argsort([len(text) for text in texts])  # similar lengths together: less padding
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = encoder.encode([texts[row] for row in rows], layer=layer)
        masked = batch.embeddings * batch.attention_mask.unsqueeze(-1)
        states[rows, : masked.shape[1]] = masked.numpy().astype(np.float16)
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return states


def token_mask(states: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(states)
    return tensor.abs().amax(dim=-1) > 0


def cached_image_features(
    backbone: ImageBackbone,
    image_ids: Sequence[str],
    checksums: Sequence[str],
    paths: Sequence[Path],
    *,
    cache_dir: Path,
    progress: Progress | None = None,
) -> np.ndarray:
    path_of = dict(zip(image_ids, paths))
    store = EmbeddingStore(cache_dir, kind="image-features", encoder_id=backbone.id)
    return store.get(
        image_ids, checksums, lambda ids: image_features(backbone, [path_of[item] for item in ids]).astype(np.float16),
        batch_size=512, progress=progress,
    ).astype(np.float32)


def cached_text_states(
    product_ids: Sequence[str],
    texts: Sequence[str],
    *,
    layer: int,
    max_tokens: int,
    cache_dir: Path,
    progress: Progress | None = None,
) -> np.ndarray:
    text_of = dict(zip(product_ids, texts))
    encoder_id = f"{TextEncoder.id}-layer{layer}-tokens{max_tokens}"
    store = EmbeddingStore(cache_dir, kind="text-states", encoder_id=encoder_id)
    return store.get(
        product_ids, [text_hash(text) for text in texts],
        lambda ids: text_states([text_of[item] for item in ids], layer=layer, max_tokens=max_tokens),
        batch_size=512, progress=progress,
    )


def cached_image_maps(
    backbone: ImageBackbone,
    image_ids: Sequence[str],
    checksums: Sequence[str],
    paths: Sequence[Path],
    *,
    tail_blocks: int,
    cache_dir: Path,
    progress: Progress | None = None,
) -> np.ndarray:
    path_of = dict(zip(image_ids, paths))
    store = EmbeddingStore(cache_dir, kind="image-maps", encoder_id=f"{backbone.id}-tail{tail_blocks}")
    return store.get(
        image_ids, checksums,
        lambda ids: image_maps(backbone, [path_of[item] for item in ids], tail_blocks=tail_blocks).astype(np.float16),
        batch_size=512, progress=progress,
    )
