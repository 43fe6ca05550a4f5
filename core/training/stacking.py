"""The combined model's stacked inputs: photo features, keyword scores and text-model outputs, the
last two cross-fitted on the training side (each training product's from a model that never saw
it), as stacking requires."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch

from core.data.catalogue import Catalogue
from core.data.splits import cross_fit, stratified_folds
from core.encoders.features import load_text_encoder
from core.encoders.text_encoder import TextEncoder
from core.models.checkpoints import LoadedModel
from core.models.keyword_branch import stacked_scores
from core.models.networks import TextCNN
from core.runtime.progress import StageProgress, for_stage
from core.training.hyperparameters import HyperParameters
from core.training.loop import Batch, fit, index_batches, make_optimizer, make_scheduler, predict_logits, set_seed
from core.training.records import TrainingError


class StackedInputs:
    """Mixed into core.training.trainer.Trainer, whose catalogue, labels and text pipeline it uses."""

    catalogue: Catalogue
    labels: list[str]
    product_ids: list[str]
    product_y: np.ndarray
    fingerprint: str
    feature_progress: StageProgress | None

    def image_features(self, backbone_id: str) -> np.ndarray:
        raise NotImplementedError  # provided by Trainer

    def text_states(self, *, layer: int, max_tokens: int) -> np.ndarray:
        raise NotImplementedError  # provided by Trainer

    def _text_inputs(self, hyper: HyperParameters) -> tuple[TextEncoder, int, Callable[[np.ndarray], Batch]]:
        raise NotImplementedError  # provided by Trainer

    def _new_text_model(self, encoder: TextEncoder, layer: int, hyper: HyperParameters) -> tuple[TextCNN, list[dict[str, Any]]]:
        raise NotImplementedError  # provided by Trainer

    def keyword_scores(self, train_rows: np.ndarray, *, seed: int) -> tuple[dict[str, object], np.ndarray]:
        """Keyword scores of every product: cross-fitted on the training side, from the scorer fitted
        on all of it elsewhere; and that scorer's state, for the checkpoint."""
        scorer, scores = stacked_scores(
            [product.text for product in self.catalogue.products], self.product_y, train_rows, n_classes=len(self.labels), seed=seed
        )
        return scorer.to_state(), scores

    def text_model_features(self, text: LoadedModel, *, max_tokens: int, logits: bool = False) -> np.ndarray:
        states = torch.from_numpy(self.text_states(layer=text.text_layer, max_tokens=max_tokens))
        return text_features(text, states, logits=logits)

    def cross_fitted_text_logits(self, text: LoadedModel, train_rows: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
        """(N, classes) text logits for stacking: each training row's from a fold model trained without it
        (the text run's recipe and its best epoch count), every other row's from the text run's model.

        The text run's own model has fitted the training rows, so its outputs there are more confident
        than anywhere else: a combined model trained on them would trust the text too much.
        """
        known = {item.name for item in fields(HyperParameters)}
        text_hyper = replace(
            HyperParameters(**{key: value for key, value in text.info["hyperparameters"].items() if key in known}), seed=seed
        )
        epochs = int(text.info.get("best_epoch") or text_hyper.epochs)
        if self.text_layer(text_hyper) != text.text_layer:
            raise TrainingError("the text run's checkpoint does not match its hyper-parameters (encoder layer)")
        logits = self.text_model_features(text, max_tokens=text_hyper.max_tokens, logits=True)
        splits = stratified_folds(self.product_y, rows=train_rows, folds=folds, seed=seed)
        out_of_fold, _ = self.fold_text_logits(text_hyper, splits, epochs=epochs, seed=seed)
        logits[train_rows] = out_of_fold[train_rows]
        return logits

    def text_layer(self, hyper: HyperParameters) -> int:
        """The encoder layer whose output a text model by `hyper` reads."""
        return load_text_encoder(hyper.max_tokens).n_layers - hyper.finetune_layers

    def fold_text_logits(
        self,
        hyper: HyperParameters,
        splits: Sequence[tuple[np.ndarray, np.ndarray]],
        *,
        epochs: int,
        seed: int,
        also: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Out-of-fold text logits: per (fit rows, score rows), a text model by `hyper`'s recipe trained on
        the fit rows for `epochs` (no validation) scores the score rows; the rest of the (N, classes)
        array stays zero. With `also`, the mean of every fold model's logits for those rows too."""
        encoder, layer, make = self._text_inputs(hyper)
        also_sum = None if also is None else np.zeros((len(also), len(self.labels)), np.float32)

        def fit_and_score(fold: int, fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
            nonlocal also_sum
            set_seed(seed + fold)
            model, groups = self._new_text_model(encoder, layer, hyper)
            optimizer = make_optimizer(groups, hyper)
            fit(
                model,
                optimizer=optimizer,
                scheduler=make_scheduler(optimizer, hyper),
                val_batches=None,
                epochs=epochs,
                label_smoothing=hyper.label_smoothing,
                seed=seed + fold,
                on_epoch=lambda *_: None,
                bf16=True,
                train_batches=lambda generator: index_batches(fit_rows, hyper.batch_size, make, generator),
            )
            if also is not None and also_sum is not None:
                also_sum += predict_logits(model, index_batches(also, 128, make), bf16=True)
            return predict_logits(model, index_batches(score_rows, 128, make), bf16=True)

        logits = cross_fit(
            fit_and_score,
            list(splits),
            n_rows=len(self.product_ids),
            width=len(self.labels),
            progress=for_stage(self.feature_progress, "text fold models"),
        )
        return logits, None if also_sum is None else also_sum / len(splits)

    def _check_same_split(self, text: LoadedModel, hyper: HyperParameters) -> None:
        text_hyper = text.info.get("hyperparameters", {})
        if (
            text_hyper.get("seed") != hyper.seed
            or text_hyper.get("test_fraction") != hyper.test_fraction
            or text.info.get("data_fingerprint") != self.fingerprint
        ):
            raise TrainingError(
                "the combined model needs a text model trained on this catalogue with the same split seed and test fraction"
            )

    def _combined_inputs(
        self, text: LoadedModel, hyper: HyperParameters, train_rows: np.ndarray
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], dict[str, object] | None, dict[str, Any]]:
        """Per product: (mean photo features, text-model features or cross-fitted logits, has a photo,
        keyword scores or None); the keyword scorer's state; the combined model's config."""
        product_image, has_image = self.catalogue.photo_means(self.image_features(hyper.backbone))
        max_tokens = int(text.config.get("max_tokens", 128))
        if hyper.text_folds:
            text_input, text_features = "logits", self.cross_fitted_text_logits(text, train_rows, folds=hyper.text_folds, seed=hyper.seed)
        else:
            text_input, text_features = "features", self.text_model_features(text, max_tokens=max_tokens)
        keyword_state, keywords = None, None
        if hyper.keyword_branch:
            keyword_state, keyword_scores = self.keyword_scores(train_rows, seed=hyper.seed)
            keywords = torch.from_numpy(keyword_scores)
        config = {
            "image_dim": product_image.shape[1],
            "text_dim": text_features.shape[1],
            "n_classes": len(self.labels),
            "dropout": hyper.dropout,
            "text_layer": text.text_layer,
            "max_tokens": max_tokens,
            "keyword_dim": len(self.labels) if keywords is not None else 0,
            "text_input": text_input,
        }
        inputs = (torch.from_numpy(product_image), torch.from_numpy(text_features), torch.from_numpy(has_image), keywords)
        return inputs, keyword_state, config


def text_features(text: LoadedModel, states: torch.Tensor, *, logits: bool = False) -> np.ndarray:
    """The text model's pooled CNN features, or its logits (the combined model's text input)."""
    model: TextCNN = text.model  # type: ignore[assignment]
    return model.logits_and_features(states)[0 if logits else 1]
