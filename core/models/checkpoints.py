"""Checkpoints: one file per trained model holding its weights, constructor config, label map,
encoder ids, preprocessing and metrics; written atomically, checked on load."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.models.manifest import ModelFileError  # noqa: F401 - raised here, and imported from here by callers
from core.models.networks import CombinedClassifier, FineTunedImageClassifier, ImageHead, TextCNN

CHECKPOINT_FORMAT = 1


@dataclass
class LoadedModel:
    kind: str  # image | text | combined
    module: nn.Module | None  # None until first used when loaded lazily
    labels: list[str]
    config: dict[str, Any]
    info: dict[str, Any]  # encoders, preprocessing, hyper-parameters, metrics, fingerprint, run id
    path: Path | None = None

    @property
    def model(self) -> nn.Module:
        if self.module is None:  # loaded lazily: read the weights again now
            if self.path is None:
                raise ModelFileError("a lazily loaded model needs its file")
            self.module = load_checkpoint(self.path).model
        return self.module

    @property
    def text_layer(self) -> int:
        """How many encoder layers run before the model's own (text and combined models)."""
        return int(self.config.get("text_layer", 6))


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    n_classes = int(config["n_classes"])
    if kind == "image":
        head = ImageHead(config["feature_dim"], n_classes, hidden=config["hidden"], dropout=config["dropout"])
        if not config.get("finetune_blocks"):
            return head
        from core.encoders.features import load_splittable_backbone

        return FineTunedImageClassifier(load_splittable_backbone(config["backbone"]).tail(config["finetune_blocks"]), head)
    if kind == "text":
        top_layers, encoder_config = [], None
        if config.get("finetune_layers", 0):
            from core.encoders.features import load_text_encoder

            encoder = load_text_encoder(config.get("max_tokens", 128)).model
            top_layers = list(encoder.encoder.layer[config["text_layer"] :])
            encoder_config = encoder.config
        return TextCNN(
            n_classes,
            channels=config["channels"],
            kernel_size=config["kernel_size"],
            conv_layers=config["conv_layers"],
            dropout=config["dropout"],
            top_layers=top_layers,
            encoder_config=encoder_config,
        )
    if kind == "combined":
        return CombinedClassifier(
            config["image_dim"], config["text_dim"], n_classes, keyword_dim=config.get("keyword_dim", 0), dropout=config["dropout"]
        )
    raise ValueError(f"unknown model kind {kind!r}")


INT8_MIN_ELEMENTS = 65_536  # only big matrices are worth quantising


def _quantise(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """Symmetric per-row int8: a quarter of float32's size; the rows' scales in float32."""
    rows = weight.reshape(weight.shape[0], -1).float()
    scale = (rows.abs().amax(dim=1) / 127).clamp(min=1e-12)
    return {"int8": torch.round(rows / scale[:, None]).to(torch.int8), "scale": scale, "shape": torch.tensor(weight.shape)}


def _dequantise(packed: dict[str, torch.Tensor]) -> torch.Tensor:
    return (packed["int8"].float() * packed["scale"][:, None]).reshape(tuple(packed["shape"].tolist()))


def save_checkpoint(
    path: Path,
    *,
    kind: str,
    model: nn.Module,
    labels: list[str],
    config: dict[str, Any],
    info: dict[str, Any],
    half: bool = False,
    int8: bool = False,
) -> None:
    """`half=True` stores float weights as float16; `int8=True` stores big weight matrices as int8 with
    per-row scales (shipped models: a quarter of the size; the README gives the accuracy measured after)."""
    state: dict[str, Any] = {}
    quantised: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        if int8 and value.is_floating_point() and value.dim() >= 2 and value.numel() >= INT8_MIN_ELEMENTS:
            quantised[key] = _quantise(value)
        else:
            state[key] = (value.half() if (half or int8) and value.is_floating_point() else value).clone()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": str(kind),
        "labels": labels,
        "config": config,
        "info": info,
        "state_dict": state,
        "int8_state": quantised,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(payload, path)


def _write(payload: dict[str, Any], path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)  # never a half-written checkpoint under the real name


def update_checkpoint_info(path: Path, **entries: Any) -> None:
    """Set entries of a checkpoint's `info` (a calibration, say) without touching its weights; atomically."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["info"] = {**payload["info"], **entries}
    _write(payload, path)


def load_checkpoint(path: str | Path, *, lazy: bool = False) -> LoadedModel:
    """The checkpoint, checked; `lazy=True` reads its header only and builds the nn.Module on first
    use (a text model's BERT layers, and the transformers classes they need, load only if it runs on torch)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise ModelFileError(f"{path}: not a readable model file ({type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT or "state_dict" not in payload:
        raise ModelFileError(f"{path}: not a model file of this project")
    kind, config = payload["kind"], dict(payload["config"])
    if lazy:
        return LoadedModel(kind, None, list(payload["labels"]), config, dict(payload["info"]), path)
    model = build_model(kind, config)
    state = {key: value.float() if value.is_floating_point() else value for key, value in payload["state_dict"].items()}
    state.update({key: _dequantise(packed) for key, packed in payload.get("int8_state", {}).items()})
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelFileError(f"{path}: weights do not fit the model ({str(error).splitlines()[0]})") from error
    return LoadedModel(kind, model.eval(), list(payload["labels"]), config, dict(payload["info"]), path)
