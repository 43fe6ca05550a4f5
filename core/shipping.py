"""The shipped default models under models/: one checkpoint per kind (float16) and a manifest."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.model_io import ModelFileError, load_checkpoint, save_checkpoint

MANIFEST = "manifest.json"


def ship_models(checkpoints: dict[str, Path], models_dir: Path, *, catalogue_fingerprint: str, int8: bool = False) -> dict[str, Any]:
    """Copy trained checkpoints (float16, or int8 for big matrices) into `models_dir` and rewrite the manifest."""
    models_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = models_dir / MANIFEST
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": {}}
    loaded_models = {kind: load_checkpoint(checkpoint) for kind, checkpoint in checkpoints.items()}
    # The combined model reads the text model's features: the two must come from the same text run.
    text_run = loaded_models["text"].info.get("run_id") if "text" in loaded_models else manifest["models"].get("text", {}).get("run_id")
    combined_encoders = (loaded_models["combined"].info["encoders"] if "combined" in loaded_models
                         else manifest["models"].get("combined", {}).get("encoders") or {})
    if combined_encoders and text_run is not None and combined_encoders.get("text_model_run") != text_run:
        raise ModelFileError(f"the combined model was trained on text run {combined_encoders.get('text_model_run')}, "
                             f"not on text run {text_run}: ship a text run with the combined run built on it")
    for kind, loaded in loaded_models.items():
        target = models_dir / f"{kind}.pt"
        save_checkpoint(target, kind=kind, model=loaded.model, labels=loaded.labels, config=loaded.config, info=loaded.info, half=True, int8=int8)
        manifest["models"][kind] = {
            "file": target.name,
            "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
            "bytes": target.stat().st_size,
            "labels": loaded.labels,
            "config": loaded.config,
            "weights": "int8 (big matrices, per-row scales) + float16" if int8 else "float16",
            **{key: loaded.info.get(key) for key in ("run_id", "encoders", "preprocessing", "hyperparameters", "best_epoch", "val_accuracy", "test_metrics", "data_fingerprint")},
        }
    manifest["labels"] = next(iter(manifest["models"].values()))["labels"]
    manifest["training_data_fingerprint"] = catalogue_fingerprint
    manifest["shipped_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["produced_by"] = "python -m core train, then python -m core ship (see README: Shipped models)"
    temporary = manifest_path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2))
    os.replace(temporary, manifest_path)
    return manifest


def verify_model_file(path: Path) -> None:
    """Refuse a model file whose bytes differ from the checksum its folder's manifest recorded at
    shipping (a damaged copy or a half-written file that torch might still load)."""
    manifest_path = path.parent / MANIFEST
    if not manifest_path.is_file():
        return
    try:
        entries = json.loads(manifest_path.read_text()).get("models", {})
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{manifest_path}: not a readable manifest ({type(error).__name__})") from error
    expected = next((entry.get("sha256") for entry in entries.values() if entry.get("file") == path.name), None)
    if expected and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
        raise ModelFileError(f"{path}: damaged or changed since it was shipped (checksum differs from {MANIFEST}); ship or activate the models again")
