"""The text encoders' inference passes, on ONNX Runtime where it loads, torch otherwise.

Two graphs, each exported once per machine (in a child process, see core.runtime.onnx_runtime):
- the sentence encoder: MiniLM -> last hidden state, mean-pooled here (semantic search);
- a text model: MiniLM's first `text_layer` layers + the fine-tuned text CNN -> logits and pooled
  features, keyed by the model file's checksum (Classify).
Both start from word vectors looked up here in MiniLM's word-embedding table (frozen in every text
model), saved beside the graphs and memory-mapped: one copy, of which only the rows used are read,
instead of 47 MB inside each graph.
On ONNX Runtime a process classifies and searches without loading transformers' BERT classes (which
import torch._dynamo), the same outputs as torch (checked by the tests); training and the cached
evaluation states stay on torch. `MARKETPLACE_TEXT_ENGINE=auto|onnx|torch` overrides the choice.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from core.encoders.text_encoder import DEFAULT_MAX_TOKENS, EMBEDDING_DIM, TEXT_ENCODER_ID, TextEncoder, batches_by_length, tokenize
from core.runtime.onnx_runtime import Engine, export_graph, export_in_child, graph_path, onnx_unless_torch, open_session, requested_engine

if TYPE_CHECKING:
    from core.models.networks import TextCNN

ENGINE_VARIABLE = "MARKETPLACE_TEXT_ENGINE"
BATCH_SIZE = 32

SentenceEncoder = Callable[[Sequence[str]], np.ndarray]  # texts -> (N, 384) L2-normalised float32
TextModelPass = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]  # texts -> (logits, pooled features)


def requested_text_engine() -> str:
    return requested_engine(ENGINE_VARIABLE)


def sentence_graph_path() -> Path:
    return graph_path(f"{TEXT_ENCODER_ID}-sentences")


def text_model_graph_path(checksum: str) -> Path:
    """The graph of the text model whose file has this SHA-256."""
    return graph_path(f"{TEXT_ENCODER_ID}-text-model-{checksum[:16]}")


def word_table_path() -> Path:
    return graph_path(f"{TEXT_ENCODER_ID}-word-embeddings").with_suffix(".npy")


@functools.cache
def word_table() -> np.ndarray:
    """MiniLM's (vocabulary, 384) word embeddings, memory-mapped (exported with the sentence encoder)."""
    if not word_table_path().is_file():
        export_in_child("sentence-encoder", str(sentence_graph_path()))
    return np.load(word_table_path(), mmap_mode="r")


def _tokens(texts: Sequence[str], max_tokens: int) -> dict[str, np.ndarray]:
    encoded = tokenize(texts, max_tokens=max_tokens, return_tensors="np")
    return {"input_ids": encoded["input_ids"].astype(np.int64), "attention_mask": encoded["attention_mask"].astype(np.int64)}


def graph_inputs(texts: Sequence[str], max_tokens: int) -> dict[str, np.ndarray]:
    tokens = _tokens(texts, max_tokens)
    return {"word_vectors": np.asarray(word_table()[tokens["input_ids"]], np.float32), "attention_mask": tokens["attention_mask"]}


def _in_length_order(texts: Sequence[str], run: Callable[[list[str]], list[np.ndarray]], widths: Sequence[int]) -> list[np.ndarray]:
    """`run` over batches of texts of similar length (less padding), results put back in order."""
    outputs = [np.empty((len(texts), width), np.float32) for width in widths]
    for rows in batches_by_length(texts, BATCH_SIZE):
        for output, part in zip(outputs, run([texts[row] for row in rows])):
            output[rows] = part
    return outputs


def pooled_sentences(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean over real tokens, L2-normalised (as core.encoders.text_encoder.mean_pool does in torch)."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


@functools.cache
def sentence_encoder() -> tuple[Engine, SentenceEncoder]:
    """The engine chosen for sentence embeddings and its encoder, loaded once per process."""
    onnx_encode = onnx_unless_torch(ENGINE_VARIABLE, _onnx_sentence_encoder, on_torch="sentence embeddings run")
    if onnx_encode is not None:
        return Engine.ONNX, onnx_encode

    def encode(texts: Sequence[str]) -> np.ndarray:
        from core.encoders.features import load_text_encoder

        return load_text_encoder(DEFAULT_MAX_TOKENS).encode_sentences(list(texts)).numpy()

    return Engine.TORCH, encode


def sentence_embeddings(texts: Sequence[str]) -> np.ndarray:
    """(N, 384) L2-normalised sentence embeddings, in the order of `texts`."""
    if not texts:
        return np.empty((0, EMBEDDING_DIM), np.float32)
    return sentence_encoder()[1](texts)


def _onnx_sentence_encoder() -> SentenceEncoder:
    path = sentence_graph_path()
    if not (path.is_file() and word_table_path().is_file()):
        export_in_child("sentence-encoder", str(path))
    session = open_session(path)

    def run(batch: list[str]) -> list[np.ndarray]:
        inputs = graph_inputs(batch, DEFAULT_MAX_TOKENS)
        return [pooled_sentences(session.run(None, inputs)[0], inputs["attention_mask"])]

    return lambda texts: _in_length_order(texts, run, [EMBEDDING_DIM])[0]


@functools.lru_cache(maxsize=2)
def onnx_text_model(model_file: Path, *, checksum: str, max_tokens: int, n_classes: int, feature_dim: int) -> TextModelPass | None:
    """The text model of `model_file` (with the encoder layers below it) on ONNX Runtime, or None
    where the torch one must run (the override, or an engine that did not load: remembered). Keyed by
    the file's `checksum` too: a model activated under the same path is a new model."""
    return onnx_unless_torch(
        ENGINE_VARIABLE,
        lambda: _onnx_text_model(model_file, checksum=checksum, max_tokens=max_tokens, n_classes=n_classes, feature_dim=feature_dim),
        on_torch="the text model runs",
    )


def _onnx_text_model(model_file: Path, *, checksum: str, max_tokens: int, n_classes: int, feature_dim: int) -> TextModelPass:
    path = text_model_graph_path(checksum)
    if not path.is_file():
        export_in_child("text-model", str(model_file), str(path))
    session = open_session(path)

    def run(batch: list[str]) -> list[np.ndarray]:
        return list(session.run(None, graph_inputs(batch, max_tokens)))

    return lambda texts: tuple(_in_length_order(texts, run, [n_classes, feature_dim]))  # type: ignore[return-value]


# ----- exports (run in the child process)


class _LastHidden(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, word_vectors: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(inputs_embeds=word_vectors, attention_mask=attention_mask).last_hidden_state


class _TextModelGraph(nn.Module):
    """Word vectors -> the encoder's first `layer` layers -> the text model, as CategoryClassifier runs them."""

    def __init__(self, encoder: TextEncoder, layer: int, text_model: TextCNN) -> None:
        super().__init__()
        self.encoder = encoder.model
        self.first_layers = encoder.first_layers
        self.layer = layer
        self.text_model = text_model

    def forward(self, word_vectors: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.first_layers({"inputs_embeds": word_vectors, "attention_mask": attention_mask}, self.layer)
        states = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
        features = self.text_model.features(states, attention_mask.bool())
        return self.text_model.output(features), features


GRAPH_AXES = {"word_vectors": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}


def _example(encoder: TextEncoder) -> tuple[torch.Tensor, torch.Tensor]:
    """Two texts of different lengths: the traced graph must handle padding."""
    tokens = _tokens(["a short one", "a rather longer example sentence with more words in it"], DEFAULT_MAX_TOKENS)
    input_ids = torch.from_numpy(tokens["input_ids"])
    return encoder.model.embeddings.word_embeddings(input_ids).detach(), torch.from_numpy(tokens["attention_mask"])


def export_sentence_encoder(path: Path) -> None:
    """The sentence encoder's graph, and the word-embedding table beside it (both graphs read it)."""
    from core.encoders.features import load_text_encoder

    encoder = load_text_encoder(DEFAULT_MAX_TOKENS)
    table = word_table_path()
    table.parent.mkdir(parents=True, exist_ok=True)
    temporary = table.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(temporary, encoder.model.embeddings.word_embeddings.weight.detach().numpy())
    os.replace(temporary, table)
    export_graph(
        _LastHidden(encoder.model),
        _example(encoder),
        path,
        input_names=["word_vectors", "attention_mask"],
        output_names=["hidden"],
        dynamic_axes={**GRAPH_AXES, "hidden": {0: "batch", 1: "tokens"}},
    )


def export_text_model(model_file: Path, path: Path) -> None:
    from core.encoders.features import load_text_encoder
    from core.models.checkpoints import ModelFileError, load_checkpoint
    from core.models.networks import TextCNN

    loaded = load_checkpoint(model_file)
    if not isinstance(loaded.model, TextCNN):
        raise ModelFileError(f"{model_file} holds a {loaded.kind} model, not a text model")
    encoder = load_text_encoder(int(loaded.config.get("max_tokens", DEFAULT_MAX_TOKENS)))
    export_graph(
        _TextModelGraph(encoder, loaded.text_layer, loaded.model),
        _example(encoder),
        path,
        input_names=["word_vectors", "attention_mask"],
        output_names=["logits", "features"],
        dynamic_axes={**GRAPH_AXES, "logits": {0: "batch"}, "features": {0: "batch"}},
    )
