"""How this machine computes: numeric precision, thread counts, and what the CPU offers.

bf16 autocast is 2-4x faster than fp32 on CPUs with native bf16 (AVX512-BF16 or AMX) and 6-7x
slower where it is emulated (AVX2 only), so the precision is decided here, once per process, from
the CPU's flags, confirmed by a short micro-benchmark whose verdict is cached per machine:

- `MARKETPLACE_PRECISION=auto` (default): bf16 only where the CPU has native bf16 units and the
  micro-benchmark finds it faster than fp32; fp32 elsewhere. Never slower than fp32.
- `MARKETPLACE_PRECISION=fp32` or `bf16`: forced (bf16 on an AVX2 CPU is allowed, and slow).

Every forward pass of an encoder or classifier takes its autocast from `autocast()`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

import torch

PRECISION_VARIABLE = "MARKETPLACE_PRECISION"
MACHINE_CACHE_VARIABLE = "MARKETPLACE_MACHINE_CACHE"


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"


@dataclass(frozen=True)
class CpuInfo:
    capability: str  # torch's kernel level: DEFAULT, AVX2, AVX512, ...
    model: str
    cores: int
    avx512_bf16: bool
    amx: bool

    @property
    def bf16(self) -> bool:
        """Native bf16 arithmetic (not emulated)."""
        return self.avx512_bf16 or self.amx


@functools.cache
def cpu_info() -> CpuInfo:
    def flag(name: str) -> bool:
        check = getattr(torch.cpu, name, None)
        try:
            return bool(check()) if check else False
        except RuntimeError:
            return False

    return CpuInfo(
        torch.backends.cpu.get_cpu_capability(),
        _cpu_model(),
        available_cores(),
        flag("_is_avx512_bf16_supported"),
        flag("_is_amx_tile_supported"),
    )


def available_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_cache_dir() -> Path:
    """Per-machine files (the precision verdict, exported encoder graphs), shared by every catalogue home."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "marketplace-browser"
    return Path(os.environ.get(MACHINE_CACHE_VARIABLE, default))


@functools.cache
def precision() -> Precision:
    """The precision every forward pass uses in this process (see the module's docstring)."""
    configure_threads()
    requested = os.environ.get(PRECISION_VARIABLE, "auto").strip().lower() or "auto"
    if requested in (Precision.FP32, Precision.BF16):
        return Precision(requested)
    if requested != "auto":
        raise ValueError(f"{PRECISION_VARIABLE} must be auto, fp32 or bf16, not {requested!r}")
    if not cpu_info().bf16:
        return Precision.FP32
    return Precision.BF16 if bf16_benchmark().bf16_faster else Precision.FP32


@dataclass(frozen=True)
class Bf16Benchmark:
    fp32_ms: float
    bf16_ms: float

    @property
    def bf16_faster(self) -> bool:
        return self.bf16_ms < self.fp32_ms


def bf16_benchmark() -> Bf16Benchmark:
    """fp32 against bf16 autocast on an encoder-sized layer stack, measured once per machine
    (CPU model, core count, torch version) and cached."""
    info = cpu_info()
    key = hashlib.sha1(f"{info.model}|{info.cores}|{torch.__version__}".encode()).hexdigest()[:16]
    path = machine_cache_dir() / f"bf16-benchmark-{key}.json"
    try:
        return Bf16Benchmark(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    result = _measure_bf16()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(asdict(result)))
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home: measure again next time
    return result


def _measure_bf16() -> Bf16Benchmark:
    torch.manual_seed(0)
    layers = torch.nn.Sequential(*[torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384)] * 2).eval()
    inputs = torch.randn(32 * 64, 384)

    def best_of(bf16: bool) -> float:
        timings = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            layers(inputs)  # warm-up: kernels chosen, weights cast
            for _ in range(5):
                started = time.perf_counter()
                layers(inputs)
                timings.append((time.perf_counter() - started) * 1000)
        return min(timings)

    return Bf16Benchmark(fp32_ms=best_of(False), bf16_ms=best_of(True))


def autocast(enabled: bool = True) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast where this machine's precision is bf16, a no-op context elsewhere."""
    if enabled and precision() is Precision.BF16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def configure_threads() -> int:
    """Intra-op threads = the cores this process may use (set once); returns that number."""
    cores = available_cores()
    torch.set_num_threads(cores)
    return cores


def decode_workers() -> int:
    """Threads that decode photos while a model runs. Decoding costs a few percent of a forward
    pass, so one thread keeps up; more would compete with the model's own threads."""
    return 1 if available_cores() <= 4 else 2


@contextlib.contextmanager
def forced_precision(value: Precision | str) -> Iterator[None]:
    """For tests and benchmarks: this precision until the block ends."""
    previous = os.environ.get(PRECISION_VARIABLE)
    os.environ[PRECISION_VARIABLE] = str(value)
    precision.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PRECISION_VARIABLE, None)
        else:
            os.environ[PRECISION_VARIABLE] = previous
        precision.cache_clear()
