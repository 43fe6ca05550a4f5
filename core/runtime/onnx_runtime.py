"""ONNX Runtime beside torch: engine choice, graph files cached per machine, sessions, and exports
run in a child process.

Exports run in a child process (`python -m core.runtime.onnx_export`) so that the exporter, and the
transformers BERT classes the text graphs are built from (which import torch._dynamo: +220 MB
resident), never load into a long-lived process such as the app server.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import torch

from core.runtime.compute import available_cores, machine_cache_dir

ONNX_OPSET = 17
EXPORT_TIMEOUT_SECONDS = 900
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)
T = TypeVar("T")


class Engine(StrEnum):
    ONNX = "onnx"
    TORCH = "torch"


def requested_engine(variable: str) -> str:
    """`auto`, `onnx` or `torch` from the environment variable (auto: onnx when it loads)."""
    value = os.environ.get(variable, "auto").strip().lower() or "auto"
    if value not in ("auto", Engine.ONNX, Engine.TORCH):
        raise ValueError(f"{variable} must be auto, onnx or torch, not {value!r}")
    return value


def onnx_unless_torch(variable: str, load: Callable[[], T], *, on_torch: str) -> T | None:
    """`load()` (an ONNX Runtime pass) unless `variable` asks for torch; where it fails, None (the
    caller's torch pass takes over, with a warning naming `on_torch`) under `auto`, an error under `onnx`."""
    requested = requested_engine(variable)
    if requested == Engine.TORCH:
        return None
    try:
        return load()
    except Exception as error:  # noqa: BLE001 - any export or runtime failure falls back to torch
        if requested == Engine.ONNX:
            raise RuntimeError(f"{variable}=onnx, but the ONNX engine did not load: {error}") from error
        log.warning("%s on torch: the ONNX engine did not load (%s)", on_torch, error)
        return None


def graph_path(name: str) -> Path:
    """Where this machine keeps the exported graph `name` (versions in the name: a new torch or
    ONNX Runtime exports again)."""
    import onnxruntime

    return machine_cache_dir() / "onnx" / f"{name}-torch{torch.__version__}-ort{onnxruntime.__version__}-opset{ONNX_OPSET}.onnx"


@functools.cache
def _shared_thread_pool() -> bool:
    """One ONNX Runtime thread pool for every session in the process, sized to its cores: the image
    and text passes of one listing run back to back, and separate pools wake and contend (a shared
    one classifies a listing 1-2 ms faster here). False where this ONNX Runtime cannot share."""
    try:
        from onnxruntime.capi import _pybind_state

        _pybind_state.set_global_thread_pool_sizes(available_cores(), 1)
        return True
    except Exception:  # noqa: BLE001 - an older runtime, or its environment already made: per-session pools
        return False


def open_session(path: Path) -> Any:  # an onnxruntime InferenceSession: onnxruntime has no type stubs
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if _shared_thread_pool():
        options.use_per_session_threads = False
    else:
        options.intra_op_num_threads = available_cores()
        options.inter_op_num_threads = 1
    # Idle threads sleep instead of spinning, so the photo decoder beside them gets the CPU.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_graph(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> None:
    """`module` as an ONNX graph (the TorchScript exporter: it handles these models' dynamic shapes),
    written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's business
        torch.onnx.export(
            module.eval(),
            example,
            str(temporary),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={name: dict(axes) for name, axes in dynamic_axes.items()},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    os.replace(temporary, path)


def export_in_child(graph: str, *arguments: str) -> None:
    """Run `python -m core.runtime.onnx_export GRAPH ARGUMENTS...`; its error, if any, as a RuntimeError."""
    try:
        subprocess.run(
            [sys.executable, "-m", "core.runtime.onnx_export", graph, *arguments],
            cwd=REPOSITORY_ROOT,
            check=True,
            capture_output=True,
            text=True,
            timeout=EXPORT_TIMEOUT_SECONDS,
        )
    except subprocess.CalledProcessError as error:
        last_line = (error.stderr or "").strip().splitlines()[-1:] or [f"exit status {error.returncode}"]
        raise RuntimeError(f"exporting the {graph} graph failed: {last_line[0]}") from error
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"exporting the {graph} graph took over {EXPORT_TIMEOUT_SECONDS} s") from error
