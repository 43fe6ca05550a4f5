"""Precision and engine choices: fp32 where bf16 is not native, the overrides honoured, the verdict
cached per machine; the ONNX image engine gives the torch backbone's features."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from core.runtime import compute
from core.runtime.compute import Bf16Benchmark, CpuInfo, Precision

AVX2_ONLY = CpuInfo("AVX2", "test CPU", 2, avx512_bf16=False, amx=False)
WITH_AMX = CpuInfo("AVX512", "test CPU", 2, avx512_bf16=True, amx=True)


@pytest.fixture
def fresh_precision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Precision decided anew in this test (its cache cleared before and after), verdicts cached under tmp_path."""
    monkeypatch.delenv(compute.PRECISION_VARIABLE, raising=False)
    monkeypatch.setenv(compute.MACHINE_CACHE_VARIABLE, str(tmp_path))
    compute.precision.cache_clear()
    yield monkeypatch
    compute.precision.cache_clear()


def test_fp32_where_the_cpu_has_no_native_bf16(fresh_precision: pytest.MonkeyPatch) -> None:
    fresh_precision.setattr(compute, "cpu_info", lambda: AVX2_ONLY)
    fresh_precision.setattr(compute, "_measure_bf16", lambda: pytest.fail("no benchmark where the flags already say no"))
    assert compute.precision() is Precision.FP32
    with compute.autocast():
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize(
    ("benchmark", "expected"),
    [(Bf16Benchmark(fp32_ms=10, bf16_ms=4), Precision.BF16), (Bf16Benchmark(fp32_ms=10, bf16_ms=12), Precision.FP32)],
)
def test_native_bf16_is_used_only_where_it_is_measured_faster(
    fresh_precision: pytest.MonkeyPatch, benchmark: Bf16Benchmark, expected: Precision
) -> None:
    fresh_precision.setattr(compute, "cpu_info", lambda: WITH_AMX)
    fresh_precision.setattr(compute, "_measure_bf16", lambda: benchmark)
    assert compute.precision() is expected
    with compute.autocast():
        assert torch.is_autocast_enabled("cpu") == (expected is Precision.BF16)
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with compute.autocast(enabled=False):
        assert not torch.is_autocast_enabled("cpu")


def test_the_bf16_verdict_is_measured_once_per_machine(fresh_precision: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []
    fresh_precision.setattr(compute, "cpu_info", lambda: WITH_AMX)
    fresh_precision.setattr(compute, "_measure_bf16", lambda: calls.append(1) or Bf16Benchmark(fp32_ms=10, bf16_ms=5))
    assert compute.bf16_benchmark().bf16_faster and compute.bf16_benchmark().bf16_faster
    assert len(calls) == 1 and len(list(tmp_path.glob("bf16-benchmark-*.json"))) == 1


@pytest.mark.parametrize("value", ["fp32", "bf16", " BF16 "])
def test_the_override_is_honoured_whatever_the_cpu(fresh_precision: pytest.MonkeyPatch, value: str) -> None:
    fresh_precision.setattr(compute, "cpu_info", lambda: AVX2_ONLY)
    fresh_precision.setenv(compute.PRECISION_VARIABLE, value)
    assert compute.precision() is Precision(value.strip().lower())


def test_a_bad_override_is_refused_with_the_choices(fresh_precision: pytest.MonkeyPatch) -> None:
    fresh_precision.setenv(compute.PRECISION_VARIABLE, "fp8")
    with pytest.raises(ValueError, match="auto, fp32 or bf16"):
        compute.precision()


def test_the_real_measurement_compares_two_positive_timings() -> None:
    result = compute._measure_bf16()
    assert result.fp32_ms > 0 and result.bf16_ms > 0


def test_threads_use_the_cores_this_process_may_run_on() -> None:
    assert compute.configure_threads() == compute.available_cores() == torch.get_num_threads()
    assert 1 <= compute.decode_workers() < max(2, compute.available_cores())


def test_the_onnx_engine_gives_the_torch_backbones_features() -> None:
    from core.encoders.backbones import get_backbone
    from core.encoders.image_engine import Engine, feature_extractor, load_backbone
    from tests.helpers import generated_photo

    backbone = get_backbone("efficientnet-lite0")
    rng = random.Random(3)
    pixels = backbone.preprocess([generated_photo((200, 40, 40), shape, rng) for shape in ("rectangle", "ellipse", "triangle")])
    engine, forward = feature_extractor(backbone.id)
    assert engine is Engine.ONNX
    with torch.inference_mode():
        expected = load_backbone(backbone.id)(pixels.contiguous(memory_format=torch.channels_last)).numpy()
    assert np.allclose(forward(pixels.numpy()), expected, atol=1e-3)


def test_the_engine_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.encoders import image_engine

    monkeypatch.setenv(image_engine.ENGINE_VARIABLE, "torch")
    image_engine.feature_extractor.cache_clear()
    try:
        assert image_engine.feature_extractor("efficientnet-lite0")[0] is image_engine.Engine.TORCH
        monkeypatch.setenv(image_engine.ENGINE_VARIABLE, "tpu")
        with pytest.raises(ValueError, match="auto, onnx or torch"):
            image_engine.requested_image_engine()
    finally:
        image_engine.feature_extractor.cache_clear()
