"""A models folder's manifest (manifest.json): what each file is and its SHA-256, checked before
anything is loaded. No torch here, so pages that only read stored figures never import it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
HELD_OUT = "held_out"  # the entry for the stored held-out predictions (core.evaluation.held_out)


class ModelFileError(RuntimeError):
    """A model file is missing, truncated or not one of ours; the message names the file."""


def write_manifest(models_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomically: a reader sees the old manifest or the new one."""
    manifest_path = models_dir / MANIFEST
    temporary = manifest_path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2))
    os.replace(temporary, manifest_path)


def read_manifest(models_dir: Path) -> dict[str, Any]:
    manifest_path = models_dir / MANIFEST
    if not manifest_path.is_file():
        return {"models": {}}
    try:
        return json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{manifest_path}: not a readable manifest ({type(error).__name__})") from error


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_model_file(path: Path) -> str | None:
    """Refuse a model file whose bytes differ from the checksum its folder's manifest recorded at
    shipping (a damaged copy or a half-written file that torch might still load). Returns the file's
    SHA-256 where it was checked, None where no manifest lists the file."""
    if not (path.parent / MANIFEST).is_file():
        return None
    entries = read_manifest(path.parent).get("models", {})
    expected = next((entry.get("sha256") for entry in entries.values() if entry.get("file") == path.name), None)
    if not expected:
        return None
    actual = file_sha256(path)
    if actual != expected:
        raise ModelFileError(
            f"{path}: damaged or changed since it was shipped (checksum differs from {MANIFEST}); ship or activate the models again"
        )
    return actual
