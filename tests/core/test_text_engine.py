"""The text encoders on ONNX Runtime: the same outputs as torch, chosen and overridden like the image
engine, and a process that classifies and searches on it never loads transformers' BERT classes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.encoders import text_engine
from core.runtime.compute import Precision, forced_precision
from core.runtime.onnx_runtime import Engine, export_in_child

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Lengths from empty to past the 128-token limit, so that a batch is padded and truncated.
TEXTS = [
    "",
    "sofa",
    "iPhone 12 Pro 128GB unlocked, great condition, boxed",
    "Kids bike with 16 inch wheels, stabilisers and a bell, collection only " * 12,
    "garden table and four chairs",
]


def test_onnx_sentence_embeddings_are_the_torch_encoders(text_encoder) -> None:  # type: ignore[no-untyped-def]
    engine, encode = text_engine.sentence_encoder()
    assert engine is Engine.ONNX
    onnx = encode(TEXTS)
    with forced_precision(Precision.FP32):  # the graph is fp32: on a CPU with native bf16, torch would otherwise run bf16
        torch_embeddings = text_encoder.encode_sentences(TEXTS).numpy()
    assert onnx.shape == (len(TEXTS), 384)
    assert np.allclose(onnx, torch_embeddings, atol=1e-4)
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1, atol=1e-5)


def test_onnx_text_model_gives_the_torch_text_models_outputs(shipped_classifier) -> None:  # type: ignore[no-untyped-def]
    onnx_probabilities, onnx_branch = shipped_classifier.text_outputs_of(TEXTS)
    with forced_precision(Precision.FP32):
        torch_probabilities, torch_branch = shipped_classifier.text_outputs(shipped_classifier.text_states(TEXTS))
    assert np.allclose(onnx_probabilities, torch_probabilities, atol=1e-4)
    assert np.allclose(onnx_branch, torch_branch, atol=1e-3)
    assert (onnx_probabilities.argmax(axis=1) == torch_probabilities.argmax(axis=1)).all()


def test_the_text_engine_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(text_engine.ENGINE_VARIABLE, "torch")
    text_engine.sentence_encoder.cache_clear()
    try:
        assert text_engine.sentence_encoder()[0] is Engine.TORCH
        monkeypatch.setenv(text_engine.ENGINE_VARIABLE, "gpu")
        with pytest.raises(ValueError, match="auto, onnx or torch"):
            text_engine.requested_text_engine()
    finally:
        text_engine.sentence_encoder.cache_clear()


def test_a_failed_export_says_why_in_one_line() -> None:
    with pytest.raises(RuntimeError, match="exporting the teapot graph failed: .*unknown graph 'teapot'"):
        export_in_child("teapot")


def test_classifying_and_searching_load_no_bert_model_classes() -> None:
    """The app server's memory budget: transformers' BERT modelling code imports torch._dynamo (+220 MB)."""
    script = """
import sys
from pathlib import Path
from core.inference.category_classifier import CategoryClassifier
from core.encoders.text_engine import sentence_embeddings
prediction = CategoryClassifier(Path("models")).classify(text="Oak dining table with four chairs")
assert sentence_embeddings(["something to sit on in the garden"]).shape == (1, 384)
print(prediction.category, "|", sorted(name for name in ("torch._dynamo", "transformers.models.bert.modeling_bert") if name in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "Home & Garden | []", result.stdout
