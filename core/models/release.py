"""The shipped default models under models/: one checkpoint per kind (float16) and a manifest."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.models.checkpoints import load_checkpoint, save_checkpoint
from core.models.manifest import HELD_OUT, ModelFileError, file_sha256, read_manifest, write_manifest


def ship_models(checkpoints: dict[str, Path], models_dir: Path, *, catalogue_fingerprint: str, int8: bool = False) -> dict[str, Any]:
    """Copy trained checkpoints (float16, or int8 for big matrices) into `models_dir` and rewrite the manifest."""
    models_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(models_dir)
    loaded_models = {kind: load_checkpoint(checkpoint) for kind, checkpoint in checkpoints.items()}
    # The combined model reads the text model's features: the two must come from the same text run.
    text_run = loaded_models["text"].info.get("run_id") if "text" in loaded_models else manifest["models"].get("text", {}).get("run_id")
    combined_encoders = (
        loaded_models["combined"].info["encoders"]
        if "combined" in loaded_models
        else manifest["models"].get("combined", {}).get("encoders") or {}
    )
    if combined_encoders and text_run is not None and combined_encoders.get("text_model_run") != text_run:
        raise ModelFileError(
            f"the combined model was trained on text run {combined_encoders.get('text_model_run')}, "
            f"not on text run {text_run}: ship a text run with the combined run built on it"
        )
    for kind, loaded in loaded_models.items():
        target = models_dir / f"{kind}.pt"
        save_checkpoint(
            target, kind=kind, model=loaded.model, labels=loaded.labels, config=loaded.config, info=loaded.info, half=True, int8=int8
        )
        manifest["models"][kind] = {
            "file": target.name,
            "sha256": file_sha256(target),
            "bytes": target.stat().st_size,
            "labels": loaded.labels,
            "config": loaded.config,
            "weights": "int8 (big matrices, per-row scales) + float16" if int8 else "float16",
            **{
                key: loaded.info.get(key)
                for key in (
                    "run_id",
                    "encoders",
                    "preprocessing",
                    "hyperparameters",
                    "best_epoch",
                    "val_accuracy",
                    "test_metrics",
                    "data_fingerprint",
                )
            },
        }
    manifest["labels"] = next(iter(manifest["models"].values()))["labels"]
    manifest["training_data_fingerprint"] = catalogue_fingerprint
    manifest["shipped_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["produced_by"] = "python -m core train, then python -m core ship (see README: Shipped models)"
    # Stored held-out predictions belong to the set they were computed with: a changed set drops them.
    stale = manifest.pop(HELD_OUT, None)
    if stale:
        (models_dir / stale["file"]).unlink(missing_ok=True)
    write_manifest(models_dir, manifest)
    return manifest
