"""The three category classifiers (as nn.Modules), each working on cached encoder outputs.

- image: pretrained backbone (frozen, features cached) + a new head to the categories;
- text: BERT token embeddings -> 1-D convolutions, each followed by ReLU -> max over tokens ->
  linear to the categories; optionally the encoder's last layers are fine-tuned with it;
- combined: each branch resized to 128 features, concatenated, one linear layer to the categories;
  a learned stand-in replaces a missing photo or missing text.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from core.runtime.compute import autocast

BRANCH_DIM = 128


def robust_std(features: torch.Tensor) -> torch.Tensor:
    """Per-feature std with a floor: a feature constant on the training set must not blow up later."""
    std = features.std(0)
    return std.clamp(min=max(1e-3, 0.05 * float(std.mean())))


class ImageHead(nn.Module):
    """Pooled backbone features (B, feature_dim) -> logits; `branch` gives the 128-d hidden layer."""

    feature_mean: torch.Tensor  # buffers: training-set statistics, stored in the checkpoint
    feature_std: torch.Tensor

    def __init__(self, feature_dim: int, n_classes: int, *, hidden: int = BRANCH_DIM * 4, dropout: float = 0.5) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, hidden), nn.ReLU())
        self.output = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))

    def set_normalisation(self, features: torch.Tensor) -> None:
        """Standardise inputs with training-set statistics (stored in the checkpoint)."""
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(robust_std(features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(self.hidden((features - self.feature_mean) / self.feature_std))


class FineTunedImageClassifier(nn.Module):
    """The backbone's last blocks (fine-tuned) + the image head, on cached maps of the frozen blocks."""

    def __init__(self, tail: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.tail = tail
        self.head = head

    def train(self, mode: bool = True) -> FineTunedImageClassifier:
        super().train(mode)
        for module in self.tail.modules():  # batch-norm statistics stay those of ImageNet
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.head(self.tail(maps))


class TextCNN(nn.Module):
    """Token embeddings (B, L, 384) + mask (B, L) -> logits.

    `top_layers` are copies of the encoder's last transformer layers, fine-tuned with the CNN; the
    input is then the hidden state entering them (cached), not the encoder's last output.
    """

    def __init__(
        self,
        n_classes: int,
        *,
        embedding_dim: int = 384,
        channels: int = 256,
        kernel_size: int = 3,
        conv_layers: int = 2,
        dropout: float = 0.3,
        top_layers: list[nn.Module] | None = None,
        encoder_config: object | None = None,
    ) -> None:
        super().__init__()
        self.convolutions = nn.ModuleList(
            nn.Conv1d(embedding_dim if index == 0 else channels, channels, kernel_size, padding=kernel_size // 2)
            for index in range(conv_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(channels, n_classes)
        self.top_layers = nn.ModuleList([copy.deepcopy(layer) for layer in (top_layers or [])])
        self.encoder_config = encoder_config
        self.feature_dim = channels

    def features(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, channels): the max over real tokens of the last convolution's output."""
        mask = mask.bool()
        if len(self.top_layers):
            from transformers.masking_utils import create_bidirectional_mask

            attention = create_bidirectional_mask(config=self.encoder_config, inputs_embeds=tokens, attention_mask=mask.long())
            for layer in self.top_layers:
                tokens = layer(tokens, attention)
        # Padding positions are zeroed before every convolution, as the convolution's own padding
        # is: then how much padding a batch carries never changes a text's result.
        keep = mask.unsqueeze(1).to(tokens.dtype)
        mapped = tokens.transpose(1, 2)
        for convolution in self.convolutions:
            mapped = torch.relu(convolution(mapped * keep))
        return mapped.masked_fill(~mask.unsqueeze(1), torch.finfo(mapped.dtype).min).amax(dim=-1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout(self.features(tokens, mask)))

    @torch.no_grad()
    def logits_and_features(self, states: torch.Tensor, *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(logits, pooled features) of zero-padded token states (N, L, 384): the one batched pass every
        caller uses. Texts of similar length share a batch, cut to its longest text (far less padding
        runs through the model); the rows come back in their order."""
        self.eval()
        mask = states.abs().amax(dim=-1) > 0
        lengths = mask.sum(dim=1)
        logits = np.empty((len(states), self.output.out_features), np.float32)
        features = np.empty((len(states), self.feature_dim), np.float32)
        for rows in torch.argsort(lengths, stable=True).split(batch_size):
            longest = max(1, int(lengths[rows].max()))
            with autocast():
                pooled = self.features(states[rows, :longest].float(), mask[rows, :longest])
                logits[rows.numpy()] = self.output(pooled).float().numpy()
            features[rows.numpy()] = pooled.float().numpy()
        return logits, features


class CombinedClassifier(nn.Module):
    """Image features (mean over a product's photos), text features and, optionally, keyword scores
    -> 128 features each -> concatenated -> logits. Keyword scores come from the text, so they are
    present exactly when the text is."""

    image_mean: torch.Tensor  # buffers: training-set statistics, stored in the checkpoint
    image_std: torch.Tensor
    text_mean: torch.Tensor
    text_std: torch.Tensor
    keyword_mean: torch.Tensor
    keyword_std: torch.Tensor

    def __init__(self, image_dim: int, text_dim: int, n_classes: int, *, keyword_dim: int = 0, dropout: float = 0.3) -> None:
        super().__init__()
        self.image_branch = nn.Sequential(nn.Linear(image_dim, BRANCH_DIM), nn.ReLU())
        self.text_branch = nn.Sequential(nn.Linear(text_dim, BRANCH_DIM), nn.ReLU())
        self.keyword_branch = nn.Sequential(nn.Linear(keyword_dim, BRANCH_DIM), nn.ReLU()) if keyword_dim else None
        self.missing_image = nn.Parameter(torch.zeros(BRANCH_DIM))
        self.missing_text = nn.Parameter(torch.zeros(BRANCH_DIM))
        branches = 3 if keyword_dim else 2
        self.output = nn.Sequential(nn.Dropout(dropout), nn.Linear(branches * BRANCH_DIM, n_classes))
        self.register_buffer("image_mean", torch.zeros(image_dim))
        self.register_buffer("image_std", torch.ones(image_dim))
        self.register_buffer("text_mean", torch.zeros(text_dim))
        self.register_buffer("text_std", torch.ones(text_dim))
        self.register_buffer("keyword_mean", torch.zeros(keyword_dim))
        self.register_buffer("keyword_std", torch.ones(keyword_dim))

    def set_normalisation(self, image: torch.Tensor, text: torch.Tensor, keywords: torch.Tensor | None = None) -> None:
        self.image_mean.copy_(image.mean(0))
        self.image_std.copy_(robust_std(image))
        self.text_mean.copy_(text.mean(0))
        self.text_std.copy_(robust_std(text))
        if keywords is not None and self.keyword_branch is not None:
            self.keyword_mean.copy_(keywords.mean(0))
            self.keyword_std.copy_(robust_std(keywords))

    def forward(
        self, image: torch.Tensor, text: torch.Tensor, has_image: torch.Tensor, has_text: torch.Tensor, keywords: torch.Tensor | None = None
    ) -> torch.Tensor:
        image_part = self.image_branch((image - self.image_mean) / self.image_std)
        text_part = self.text_branch((text - self.text_mean) / self.text_std)
        image_part = torch.where(has_image.unsqueeze(-1), image_part, self.missing_image.expand_as(image_part))
        parts = [image_part, torch.where(has_text.unsqueeze(-1), text_part, self.missing_text.expand_as(text_part))]
        if self.keyword_branch is not None:
            if keywords is None:
                raise ValueError("this combined model needs keyword scores")
            keyword_part = self.keyword_branch((keywords - self.keyword_mean) / self.keyword_std)
            parts.append(torch.where(has_text.unsqueeze(-1), keyword_part, self.missing_text.expand_as(keyword_part)))
        return self.output(torch.cat(parts, dim=-1))
