"""Inference engines side by side on this CPU, for the image backbone and the text encoder:

    python -m benchmarks.bench_engines [--batches N] [--no-compile]

torch eager fp32 (contiguous and channels_last), bf16 autocast, torch.compile, ONNX Runtime, and
for MiniLM int8 dynamic quantisation of its Linear layers. Each row says how far its outputs are
from torch eager fp32, since a faster engine is only worth adopting if it computes the same thing.
Throughputs are the best of three timed passes over `--batches` batches of 32.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.common import machine_line, print_table
from core.data.cleaning import model_text
from core.encoders.backbones import get_backbone
from core.encoders.image_engine import feature_extractor, load_backbone
from core.encoders.text_encoder import TextEncoder
from core.runtime.compute import configure_threads
from core.runtime.onnx_runtime import open_session
from core.settings import get_settings


def throughput(call: Callable[[], object], items: int, *, repeat: int = 3) -> float:
    call()  # warm-up: kernels chosen, graphs built
    best = min(_timed(call) for _ in range(repeat))
    return items / best


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def image_rows(batches: int, *, compile_model: bool) -> list[tuple[str, str]]:
    backbone = get_backbone("efficientnet-lite0")
    model = backbone.load()
    batch = torch.randn(32, 3, 224, 224)
    channels_last = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        reference = model(batch).numpy()

    def run(forward: Callable[[Any], object], inputs: object) -> Callable[[], None]:
        def passes() -> None:
            with torch.inference_mode():
                for _ in range(batches):
                    forward(inputs)

        return passes

    def difference(output: object) -> str:
        values = output.float().numpy() if isinstance(output, torch.Tensor) else np.asarray(output)
        return f"max abs diff {np.abs(values - reference).max():.1e}"

    rows = []
    n = batches * 32
    rows.append(("lite0 torch eager fp32", f"{throughput(run(model, batch), n):.0f} img/s"))
    model_cl = load_backbone(backbone.id)
    rows.append(("lite0 torch eager fp32, channels_last", f"{throughput(run(model_cl, channels_last), n):.0f} img/s"))

    def bf16(inputs: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model_cl(inputs)

    with torch.inference_mode():
        bf16_output = bf16(channels_last)
    rows.append(
        (
            "lite0 torch bf16 autocast, channels_last",
            f"{throughput(run(bf16, channels_last), n, repeat=1):.0f} img/s ({difference(bf16_output)})",
        )
    )
    if compile_model:
        started = time.perf_counter()
        compiled = torch.compile(model_cl)
        with torch.inference_mode():
            compiled_output = compiled(channels_last)
        compile_seconds = time.perf_counter() - started
        rows.append(
            (
                "lite0 torch.compile (inductor), fp32, channels_last",
                f"{throughput(run(compiled, channels_last), n):.0f} img/s ({difference(compiled_output)}; compiling took {compile_seconds:.0f} s)",
            )
        )
    engine, onnx_forward = feature_extractor(backbone.id)
    rows.append(
        (
            f"lite0 ONNX Runtime fp32 (adopted: the {engine} engine is in use)",
            f"{throughput(run(onnx_forward, batch.numpy()), n):.0f} img/s ({difference(onnx_forward(batch.numpy()))})",
        )
    )
    return rows


def text_rows(texts: list[str], *, compile_model: bool) -> list[tuple[str, str]]:
    encoder = TextEncoder()
    ordered = sorted(texts, key=len)
    batches = [encoder.tokenize(ordered[start : start + 32]) for start in range(0, len(ordered), 32)]

    def pooled(model: torch.nn.Module) -> torch.Tensor:
        from core.encoders.text_encoder import mean_pool

        with torch.inference_mode():
            return torch.cat([mean_pool(model(**tokens).last_hidden_state.float(), tokens["attention_mask"]) for tokens in batches])

    reference = pooled(encoder.model)

    def agreement(embeddings: torch.Tensor) -> str:
        return f"cosine to fp32: mean {(embeddings * reference).sum(dim=1).mean():.4f}, min {(embeddings * reference).sum(dim=1).min():.4f}"

    rows = [
        (
            "MiniLM torch eager fp32, length-sorted batches of 32 (training and evaluation states)",
            f"{throughput(lambda: pooled(encoder.model), len(texts)):.0f} texts/s",
        )
    ]

    def bf16() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return pooled(encoder.model)

    rows.append(("MiniLM torch bf16 autocast", f"{throughput(bf16, len(texts), repeat=1):.0f} texts/s ({agreement(bf16())})"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        quantised = torch.ao.quantization.quantize_dynamic(encoder.model, {torch.nn.Linear}, dtype=torch.qint8)
    rows.append(
        (
            "MiniLM int8 dynamic quantisation of the Linear layers (torch.ao)",
            f"{throughput(lambda: pooled(quantised), len(texts)):.0f} texts/s ({agreement(pooled(quantised))})",
        )
    )
    if compile_model:
        started = time.perf_counter()
        compiled = torch.compile(encoder.model, dynamic=True)
        first = pooled(compiled)
        rows.append(
            (
                "MiniLM torch.compile (inductor, dynamic shapes), fp32",
                f"{throughput(lambda: pooled(compiled), len(texts)):.0f} texts/s ({agreement(first)}; first pass with compiling {time.perf_counter() - started:.0f} s)",
            )
        )
    rows.append(_onnx_text_row(texts, reference))
    return rows


def _onnx_text_row(texts: list[str], reference: torch.Tensor) -> tuple[str, str]:
    """MiniLM on ONNX Runtime as core.encoders.text_engine runs it (the TorchScript exporter's graph, word
    vectors looked up beside it), on the same batches, checked against torch fp32."""
    from core.encoders.text_engine import graph_inputs, pooled_sentences, sentence_encoder, sentence_graph_path

    engine, _ = sentence_encoder()
    session = open_session(sentence_graph_path())
    ordered = sorted(texts, key=len)
    inputs = [graph_inputs(ordered[start : start + 32], 128) for start in range(0, len(ordered), 32)]

    def pooled() -> torch.Tensor:
        return torch.cat([torch.from_numpy(pooled_sentences(session.run(None, batch)[0], batch["attention_mask"])) for batch in inputs])

    embeddings = pooled()
    cosine = (embeddings * reference).sum(dim=1)
    verdict = "same outputs" if cosine.min() > 0.999 else "wrong outputs"
    return (
        f"MiniLM ONNX Runtime fp32 (adopted: the {engine} engine is in use)",
        f"{throughput(pooled, len(texts)):.0f} texts/s (cosine to fp32: mean {cosine.mean():.4f}, min {cosine.min():.4f}: {verdict})",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=get_settings().marketplace_data)
    parser.add_argument("--batches", type=int, default=6, help="batches of 32 per timed pass")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (it compiles for a minute or more)")
    args = parser.parse_args()
    configure_threads()
    products = pd.read_csv(args.data / "Products.csv", lineterminator="\n").head(args.batches * 32)
    texts = [model_text(name, description) for name, description in zip(products["product_name"], products["product_description"])]
    print(machine_line())
    print_table(image_rows(args.batches, compile_model=not args.no_compile) + text_rows(texts, compile_model=not args.no_compile))


if __name__ == "__main__":
    main()
