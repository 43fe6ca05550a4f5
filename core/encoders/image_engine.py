"""The image backbone's pooled-feature pass, on the fastest engine this machine has.

ONNX Runtime runs EfficientNet-Lite0's depthwise convolutions about 7x faster than torch eager on an
AVX2 CPU, with the same features (max difference ~1e-5), so where `onnxruntime` is installed the
backbone is exported to ONNX once per machine (cached beside the precision verdict) and run there.
Torch eager (channels_last, autocast from core.runtime.compute) is the fallback, and the only engine for
training and for the fine-tuned tail, which need gradients or split networks.

`MARKETPLACE_IMAGE_ENGINE=auto|onnx|torch` overrides the choice (auto: onnx when it loads).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from core.encoders.backbones import EfficientNetLiteFeatures, get_backbone
from core.runtime.compute import autocast, configure_threads
from core.runtime.onnx_runtime import Engine, export_graph, export_in_child, graph_path, onnx_unless_torch, open_session, requested_engine

ENGINE_VARIABLE = "MARKETPLACE_IMAGE_ENGINE"

FeatureExtractor = Callable[[np.ndarray], np.ndarray]  # (B, 3, H, W) normalised float32 pixels -> (B, dim) float32


@functools.lru_cache(maxsize=4)
def load_backbone(backbone_id: str) -> torch.nn.Module:
    """One loaded torch backbone per process (channels_last: faster convolutions on the CPU)."""
    configure_threads()
    return get_backbone(backbone_id).load().to(memory_format=torch.channels_last)


def load_splittable_backbone(backbone_id: str) -> EfficientNetLiteFeatures:
    """`load_backbone` for fine-tuning and cached maps: only EfficientNet-Lite extractors split into frozen and tail blocks."""
    model = load_backbone(backbone_id)
    if not isinstance(model, EfficientNetLiteFeatures):
        raise ValueError(f"{backbone_id} does not split into frozen and fine-tuned blocks (EfficientNet-Lite backbones do)")
    return model


def requested_image_engine() -> str:
    return requested_engine(ENGINE_VARIABLE)


@functools.lru_cache(maxsize=4)
def feature_extractor(backbone_id: str) -> tuple[Engine, FeatureExtractor]:
    """The engine chosen for this backbone and its forward pass, loaded once per process."""
    onnx_forward = onnx_unless_torch(ENGINE_VARIABLE, lambda: _onnx_extractor(backbone_id), on_torch="image features run")
    if onnx_forward is not None:
        return Engine.ONNX, onnx_forward
    model = load_backbone(backbone_id)

    def forward(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), autocast():
            return model(torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)).float().numpy()

    return Engine.TORCH, forward


def engine_name(backbone_id: str) -> str:
    return str(feature_extractor(backbone_id)[0])


def onnx_path(backbone_id: str) -> Path:
    return graph_path(backbone_id)


def _onnx_extractor(backbone_id: str) -> FeatureExtractor:
    path = onnx_path(backbone_id)
    if not path.is_file():
        export_in_child("backbone", backbone_id, str(path))
    session = open_session(path)

    def forward(pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {"images": np.ascontiguousarray(pixels, np.float32)})[0]

    return forward


def export_onnx(backbone_id: str, path: Path) -> None:
    """The torch backbone as an ONNX graph with a dynamic batch axis."""
    backbone = get_backbone(backbone_id)
    example = torch.zeros(2, 3, backbone.input_size, backbone.input_size)
    export_graph(
        backbone.load(),
        (example,),
        path,
        input_names=["images"],
        output_names=["features"],
        dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
    )
