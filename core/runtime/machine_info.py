"""`python -m core info`: the machine and setup a bug report needs, gathered without loading a model.

The JSON shape is a public contract: {"cpu": {...}, "precision", "threads": {...}, "torch",
"image_engine": {...}, "text_engine": {...}, "database": {...}, "models": {...}, "catalogue": {...}, "caches": {...}}.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from core.encoders import image_engine, text_engine
from core.encoders.backbones import DEFAULT_BACKBONE
from core.models.manifest import HELD_OUT, ModelFileError, file_sha256, read_manifest
from core.runtime.compute import available_cores, cpu_info, decode_workers, machine_cache_dir, precision
from core.settings import Settings


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


def models_info(models_dir: Path) -> dict[str, Any]:
    """Which models are there, whether each file matches its manifest's checksum, and whether
    held-out predictions are stored with them."""
    try:
        manifest = read_manifest(models_dir)
    except ModelFileError as error:
        return {"dir": str(models_dir), "error": str(error), "kinds": {}}
    kinds = {}
    for kind, entry in manifest.get("models", {}).items():
        path = models_dir / entry.get("file", f"{kind}.pt")
        kinds[kind] = {
            "run_id": entry.get("run_id"),
            "file": path.name,
            "present": path.is_file(),
            "checksum_ok": path.is_file() and file_sha256(path) == entry.get("sha256"),
            "test_accuracy": (entry.get("test_metrics") or {}).get("accuracy"),
        }
    return {"dir": str(models_dir), "kinds": kinds, "held_out_stored": HELD_OUT in manifest}


def gather(
    settings: Settings, *, database: dict[str, str], catalogue_counts: tuple[int, int] | None, embeddings: dict[str, int] | None
) -> dict[str, Any]:
    """`database` comes from the database layer (db.session.database_facts): this layer has no SQLAlchemy."""
    cpu = cpu_info()
    cache_dir = settings.cache_dir
    try:
        onnxruntime_version: str | None = version("onnxruntime")
        exported = image_engine.onnx_path(DEFAULT_BACKBONE).is_file()
        sentences_exported = text_engine.sentence_graph_path().is_file()
    except (PackageNotFoundError, ImportError):
        onnxruntime_version, exported, sentences_exported = None, False, False
    return {
        "cpu": {
            "capability": cpu.capability,
            "bf16": cpu.bf16,
            "avx512_bf16": cpu.avx512_bf16,
            "amx": cpu.amx,
            "model": cpu.model,
            "cores": cpu.cores,
            "machine": platform.machine(),
        },
        "precision": str(precision()),
        "threads": {"intra_op": torch.get_num_threads(), "decode": decode_workers(), "cores_available": available_cores()},
        "torch": torch.__version__,
        "image_engine": {
            "requested": image_engine.requested_image_engine(),
            "variable": image_engine.ENGINE_VARIABLE,
            "onnxruntime": onnxruntime_version,
            "exported": exported,
        },
        "text_engine": {
            "requested": text_engine.requested_text_engine(),
            "variable": text_engine.ENGINE_VARIABLE,
            "onnxruntime": onnxruntime_version,
            "sentence_encoder_exported": sentences_exported,
        },
        "python": platform.python_version(),
        "database": database,
        "models": models_info(settings.models_dir),
        "catalogue": {"products": catalogue_counts[0], "images": catalogue_counts[1]} if catalogue_counts else None,
        "caches": {
            "features_dir": str(cache_dir),
            "features_bytes": folder_bytes(cache_dir),
            "machine_dir": str(machine_cache_dir()),
            "machine_bytes": folder_bytes(machine_cache_dir()),
            "embeddings": embeddings,
        },
    }
