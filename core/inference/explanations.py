"""Why a model suggests a category, with captum.

- Words: each word of the listing's text is taken out in turn (feature ablation over words) and the
  text model's calibrated probability of the category is read again; a word's attribution is how much
  the probability falls without it (negative: the word pulled away from the category).
- Photo: Grad-CAM on the image backbone's last convolution (its 1x1 head convolution, 7x7 cells), for
  the image model's category, upsampled onto the photo as the model saw it (padded square, resized).

Both run on demand (a page's "Why?" view), never on the classify path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.data.cleaning import model_text
from core.inference.category_classifier import CategoryClassifier

ABLATION_BATCH = 16  # texts with one word taken out, run together


@dataclass(frozen=True)
class WordAttribution:
    word: str
    attribution: float  # the category's probability with the word, minus without it


def word_attributions(classifier: CategoryClassifier, text: str, *, category: str | None = None) -> list[WordAttribution]:
    """Per word of the text as the text model reads it (cleaned), in order: how much it pushed the text
    model towards `category` (default: the text model's own answer)."""
    from captum.attr import FeatureAblation

    words = model_text("", text).split()
    if not words:
        return []
    target = classifier.labels.index(category) if category is not None else None

    def probabilities(kept: torch.Tensor) -> torch.Tensor:
        texts = [" ".join(word for word, keep in zip(words, row) if keep > 0.5) for row in kept.tolist()]
        raw, _ = classifier.text_outputs_of([text or "." for text in texts])
        return torch.from_numpy(classifier.calibrated("text", raw)).float()

    full = torch.ones(1, len(words))
    if target is None:
        target = int(probabilities(full).argmax(dim=1))
    ablation = FeatureAblation(probabilities)
    scores = ablation.attribute(full, baselines=0.0, target=target, perturbations_per_eval=ABLATION_BATCH)[0]
    return [WordAttribution(word, float(score)) for word, score in zip(words, scores.tolist())]


def photo_heatmap(classifier: CategoryClassifier, photo: Image.Image, *, category: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the photo as the model saw it: (size, size, 3) uint8, Grad-CAM heatmap: (size, size) in [0, 1]) for
    the image model's `category` (default: its own answer)."""
    from captum.attr import LayerAttribution, LayerGradCam

    backbone = classifier.backbone
    if not backbone.supports_finetuning:
        raise ValueError(f"photo explanations need an EfficientNet-Lite backbone, not {backbone.id}")
    extractor: Any = backbone.load()  # EfficientNetLiteFeatures over an (untyped) efficientnet_lite_pytorch network
    image_model: Any = classifier.models["image"].model
    tail_blocks = classifier.tail_blocks

    def logits(images: torch.Tensor) -> torch.Tensor:
        if tail_blocks:  # the fine-tuned last blocks and their head convolution live in the image model
            return image_model(extractor.lower(images, tail_blocks=tail_blocks))
        return image_model(extractor(images))

    layer = image_model.tail.conv_head if tail_blocks else extractor.network._conv_head
    pixels = backbone.pixels(photo)
    images = torch.from_numpy(backbone.normalise(pixels)[None])
    with torch.no_grad():
        scores = logits(images)
    target = classifier.labels.index(category) if category is not None else int(scores.argmax(dim=1))
    cam = LayerGradCam(logits, layer).attribute(images, target=target, relu_attributions=True)
    heatmap = LayerAttribution.interpolate(cam, (backbone.input_size, backbone.input_size), interpolate_mode="bilinear")[0, 0]
    heatmap = heatmap.detach().clamp(min=0).numpy()
    peak = float(heatmap.max())
    return pixels.transpose(1, 2, 0), (heatmap / peak if peak > 0 else heatmap)


def overlay(photo: np.ndarray, heatmap: np.ndarray, *, strength: float = 0.55) -> Image.Image:
    """The heatmap over the photo: warm where the model looked."""
    heat = np.clip(heatmap, 0, 1)[..., None]
    warm = np.concatenate([np.ones_like(heat), heat * 0.6, np.zeros_like(heat)], axis=-1) * 255
    blended = photo.astype(np.float32) * (1 - strength * heat) + warm * (strength * heat)
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))
