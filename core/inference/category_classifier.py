"""Classifying a listing from its photos and/or text with the shipped (or any chosen) models.

With photos and text the combined model answers; with one of them, that model alone. Every
model that can answer gives its probabilities too, for side-by-side views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.data.cleaning import model_text
from core.encoders.backbones import get_backbone
from core.encoders.features import image_features, image_maps, load_splittable_backbone, load_text_encoder
from core.encoders.text_engine import onnx_text_model
from core.enums import ModelKind
from core.inference.calibration import Calibration, softmax
from core.models.checkpoints import LoadedModel, ModelFileError, load_checkpoint
from core.models.keyword_branch import KeywordScorer
from core.models.manifest import file_sha256, verify_model_file
from core.models.networks import TextCNN
from core.runtime.compute import autocast
from core.runtime.progress import Progress

TOP_K = 5


@dataclass(frozen=True)
class Prediction:
    category: str
    model: str  # image | text | combined: which model answered
    top: list[tuple[str, float]]
    probabilities: dict[str, list[float]] = field(default_factory=dict)  # per model that could answer, in label order (calibrated)
    labels: list[str] = field(default_factory=list)
    # From the answering model's calibration (None for models shipped without one): whether its top
    # probability reaches the model's threshold, and its conformal prediction set, likeliest first.
    confident: bool | None = None
    prediction_set: list[str] | None = None
    calibrations: dict[str, Calibration] = field(default_factory=dict, repr=False)

    def as_json(self) -> dict[str, object]:
        return {
            "category": self.category,
            "model": self.model,
            "top": [{"category": category, "probability": round(probability, 4)} for category, probability in self.top],
            "confident": self.confident,
            "prediction_set": self.prediction_set,
        }

    @property
    def verdict(self) -> str:
        """How a person reads it: "Phones (confident)" or "one of: Phones, Computers & Software"."""
        if self.confident or self.prediction_set is None:
            return f"{self.category} (confident)" if self.confident else self.category
        return "one of: " + ", ".join(self.prediction_set)

    def of_model(self, kind: str) -> Prediction:
        """The answer of one of the models that answered (`probabilities` has it), in the same shape."""
        return ranked_prediction(self.labels, {kind: self.probabilities[kind]}, kind, calibrations=self.calibrations)


def ranked_prediction(
    labels: list[str], probabilities: dict[str, list[float]], model: str, *, calibrations: dict[str, Calibration] | None = None
) -> Prediction:
    """`model`'s answer: its best category and top categories from its (calibrated) probabilities in label
    order, and whether it is confident, with its prediction set, when the model has a calibration."""
    chosen = np.asarray(probabilities[model])
    order = np.argsort(-chosen)[:TOP_K]
    top = [(labels[index], float(chosen[index])) for index in order]
    calibrations = calibrations or {}
    calibration = calibrations.get(model)
    if calibration is None:
        return Prediction(top[0][0], model, top, probabilities, labels, calibrations=calibrations)
    members = calibration.prediction_sets(chosen[None, :])[0]
    prediction_set = [labels[index] for index in np.argsort(-chosen, kind="stable") if members[index]]
    confident = bool(calibration.is_confident(chosen))
    return Prediction(top[0][0], model, top, probabilities, labels, confident, prediction_set, calibrations)


class NothingToClassify(ValueError):
    """Neither a photo nor any words were given."""


class CategoryClassifier:
    """The image, text and combined models of one folder (default: the shipped `models/`), loaded once."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.models: dict[str, LoadedModel] = {}
        checksums: dict[str, str | None] = {}
        for kind in ModelKind:
            path = models_dir / f"{kind}.pt"
            if not path.is_file():
                raise ModelFileError(f"{path}: model file not found (train and ship models with: python -m core train --model all --ship)")
            checksums[kind] = verify_model_file(path)
            # The torch text model (and the BERT classes it is built from) loads only where the ONNX one cannot run.
            self.models[kind] = load_checkpoint(path, lazy=kind == "text")
        self.text_file = (models_dir / "text.pt").resolve()
        self.text_checksum = checksums["text"] or file_sha256(self.text_file)  # what the text model's ONNX graph is keyed by
        labels = {tuple(model.labels) for model in self.models.values()}
        if len(labels) != 1:
            raise ModelFileError(f"{models_dir}: the models disagree on their categories; retrain them together")
        if self.models["combined"].info["encoders"].get("text_model_run") != self.models["text"].info.get("run_id"):
            raise ModelFileError(
                f"{models_dir}: the combined model was trained on another text model than the one here; ship them together"
            )
        self.labels = list(self.models["image"].labels)
        self.backbone = get_backbone(self.models["image"].info["encoders"]["image_backbone"])
        self.tail_blocks = int(self.models["image"].config.get("finetune_blocks", 0))
        self.text_layer = self.models["text"].text_layer
        self.max_tokens = int(self.models["text"].config.get("max_tokens", 128))
        self.calibrations = {
            kind: Calibration.from_state(model.info["calibration"]) for kind, model in self.models.items() if model.info.get("calibration")
        }
        if self.calibrations:  # the prediction sets' library (a second to import) with the models, not on the first answer
            import crepes  # noqa: F401
        scorer_state = self.models["combined"].info.get("keyword_scorer")
        self.keyword_scorer: KeywordScorer | None = None
        if scorer_state is not None and self.models["combined"].config.get("keyword_dim"):
            self.keyword_scorer = KeywordScorer.from_state(scorer_state)

    # ----- encoders

    def photo_inputs(
        self, images: Sequence[Image.Image | Path], *, progress: Progress | None = None, problems: list[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(image model input, pooled backbone features): the same array unless the image model
        fine-tuned the backbone's last blocks, whose input is then the frozen blocks' maps. With
        `problems`, unreadable photos give NaN rows and their reasons (see image_features)."""
        if not self.tail_blocks:
            features = image_features(self.backbone, list(images), progress=progress, problems=problems)
            return features, features
        maps = image_maps(self.backbone, list(images), tail_blocks=self.tail_blocks, progress=progress, problems=problems)
        with torch.inference_mode(), autocast():
            backbone = load_splittable_backbone(self.backbone.id)
            pooled = backbone.upper(torch.from_numpy(maps), tail_blocks=self.tail_blocks).float().numpy()
        return maps, pooled

    def text_states(self, texts: Sequence[str]) -> torch.Tensor:
        encoder = load_text_encoder(self.max_tokens)
        batch = encoder.encode(list(texts), layer=self.text_layer)
        return batch.embeddings * batch.attention_mask.unsqueeze(-1)

    def text_outputs_of(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`text_outputs` from texts: on ONNX Runtime where it loads (core.encoders.text_engine), else on torch."""
        text_model = self.models["text"]
        onnx_pass = onnx_text_model(
            self.text_file,
            checksum=self.text_checksum,
            max_tokens=self.max_tokens,
            n_classes=len(self.labels),
            feature_dim=int(text_model.config["channels"]),
        )
        if onnx_pass is None:
            return self.text_outputs(self.text_states(texts))
        logits, features = onnx_pass(texts)
        branch = logits if self.models["combined"].config.get("text_input") == "logits" else features
        return softmax(logits), branch

    def calibrated(self, kind: str, probabilities: np.ndarray) -> np.ndarray:
        """A model's raw probabilities through its calibration (unchanged for a model shipped without one)."""
        calibration = self.calibrations.get(kind)
        return np.asarray(probabilities) if calibration is None else calibration.probabilities(probabilities)

    # ----- models on encoder outputs (batched, raw probabilities: used by evaluation too)

    @torch.no_grad()
    def image_probabilities(self, inputs: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        parts = []
        for start in range(0, len(inputs), batch_size):
            with autocast(enabled=bool(self.tail_blocks)):
                logits = self.models["image"].model(torch.from_numpy(inputs[start : start + batch_size]).float())
            parts.append(torch.softmax(logits.float(), dim=-1).numpy())
        return np.concatenate(parts) if parts else np.empty((0, len(self.labels)))

    def text_outputs(self, states: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """From one pass of the text model over zero-padded token states: its probabilities, and the
        combined model's text input (the text model's pooled features, or its logits when the combined
        model was trained on cross-fitted text logits)."""
        model: TextCNN = self.models["text"].model  # type: ignore[assignment]
        logits, features = model.logits_and_features(states)
        branch = logits if self.models["combined"].config.get("text_input") == "logits" else features
        return softmax(logits), branch

    @torch.no_grad()
    def combined_probabilities(
        self, image: np.ndarray, has_image: np.ndarray, text: np.ndarray, has_text: np.ndarray, texts: Sequence[str]
    ) -> np.ndarray:
        """`texts` are the model texts the text features came from (for the keyword branch)."""
        keywords = () if self.keyword_scorer is None else (torch.from_numpy(self.keyword_scorer.scores(list(texts))),)
        logits = self.models["combined"].model(
            torch.from_numpy(image).float(),
            torch.from_numpy(text).float(),
            torch.from_numpy(has_image),
            torch.from_numpy(has_text),
            *keywords,
        )
        return torch.softmax(logits, dim=-1).numpy()

    # ----- one listing

    def classify(self, *, images: Sequence[Image.Image | Path] = (), text: str | None = None) -> Prediction:
        words = model_text("", text or "")
        if not images and not words:
            raise NothingToClassify("give a photo, a description, or both")
        probabilities: dict[str, list[float]] = {}
        image_mean = np.zeros((1, self.models["combined"].config["image_dim"]), np.float32)
        text_vector = np.zeros((1, self.models["combined"].config["text_dim"]), np.float32)
        if images:
            model_inputs, features = self.photo_inputs(images)
            # Each photo calibrated as the model was (per photo), then averaged.
            probabilities["image"] = self.calibrated("image", self.image_probabilities(model_inputs)).mean(axis=0).tolist()
            image_mean = features.mean(axis=0, keepdims=True)
        if words:
            text_probabilities, text_vector = self.text_outputs_of([words])
            probabilities["text"] = self.calibrated("text", text_probabilities)[0].tolist()
        if images and words:
            combined = self.combined_probabilities(image_mean, np.array([True]), text_vector, np.array([True]), [words])
            probabilities["combined"] = self.calibrated("combined", combined)[0].tolist()
        answering = "combined" if "combined" in probabilities else next(iter(probabilities))
        return ranked_prediction(self.labels, probabilities, answering, calibrations=self.calibrations)
