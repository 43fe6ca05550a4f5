"""The shipped models' predictions on their held-out products, stored beside them at ship time
(checksummed in the manifest like the model files), so Evaluation and the dashboard draw at once for
the catalogue the models were shipped on, without loading a model. No torch here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from core.data.splits import TEST
from core.evaluation.metrics import PredictionSet
from core.evaluation.reliability import ece_sampling_floor
from core.models.manifest import HELD_OUT, ModelFileError, file_sha256, read_manifest, write_manifest

HELD_OUT_FILE = "held_out.npz"
STORED_NOTE = (
    "held-out test products of the catalogue the models were trained on (predictions stored with the models when they were shipped)"
)


def store_held_out_predictions(models_dir: Path, predictions: dict[str, PredictionSet], *, catalogue_fingerprint: str) -> Path:
    """Write the models' held-out predictions beside them (checksummed in the manifest, like the
    model files), so Evaluation and the dashboard draw at once for the catalogue they were shipped on."""
    arrays: dict[str, np.ndarray] = {}
    for kind, prediction in predictions.items():
        frame = prediction.frame
        arrays[f"{kind}.item_id"] = frame["item_id"].to_numpy(dtype=str)
        arrays[f"{kind}.product_id"] = frame["product_id"].to_numpy(dtype=str)
        arrays[f"{kind}.true"] = frame["true"].to_numpy(dtype=np.int16)
        arrays[f"{kind}.probabilities"] = (
            np.stack(frame["probabilities"].to_list()).astype(np.float32)
            if len(frame)
            else np.empty((0, len(prediction.labels)), np.float32)
        )
        # The figures too: a page showing them then needs neither the models nor scikit-learn.
        arrays[f"{kind}.metrics"] = np.array(json.dumps(prediction.metrics()))
    target = models_dir / HELD_OUT_FILE
    temporary = models_dir / f".{HELD_OUT_FILE}.{os.getpid()}.tmp.npz"
    np.savez_compressed(temporary, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds oddly
    os.replace(temporary, target)
    manifest = read_manifest(models_dir)
    manifest[HELD_OUT] = {
        "file": HELD_OUT_FILE,
        "sha256": file_sha256(target),
        "bytes": target.stat().st_size,
        "catalogue_fingerprint": catalogue_fingerprint,
        "kinds": sorted(predictions),
    }
    write_manifest(models_dir, manifest)
    return target


def stored_held_out_predictions(models_dir: Path, *, catalogue_fingerprint: str) -> dict[str, PredictionSet] | None:
    """The predictions `store_held_out_predictions` wrote, when they were made on this very catalogue;
    None otherwise. A file that does not match its checksum raises ModelFileError."""
    manifest = read_manifest(models_dir)
    entry = manifest.get(HELD_OUT)
    if not entry or entry.get("catalogue_fingerprint") != catalogue_fingerprint:
        return None
    path = models_dir / entry["file"]
    if not path.is_file() or file_sha256(path) != entry.get("sha256"):
        raise ModelFileError(f"{path}: damaged or changed since it was shipped (checksum differs from the manifest); ship the models again")
    labels = list(manifest["labels"])
    predictions = {}
    with np.load(path, allow_pickle=False) as arrays:
        for kind in entry["kinds"]:
            prediction = PredictionSet.from_arrays(
                f"active {kind} model",
                kind,
                labels,
                item_ids=arrays[f"{kind}.item_id"].tolist(),
                product_ids=arrays[f"{kind}.product_id"].tolist(),
                y_true=arrays[f"{kind}.true"],
                probabilities=arrays[f"{kind}.probabilities"],
                part=TEST,
                note=STORED_NOTE,
            )
            if f"{kind}.metrics" in arrays:
                metrics = json.loads(str(arrays[f"{kind}.metrics"]))
                if metrics.get("ece") is not None and "ece_floor" not in metrics:  # stored before the floor was measured
                    metrics["ece_floor"] = ece_sampling_floor(prediction.probabilities)
                prediction.stored_metrics = metrics
            predictions[kind] = prediction
    return predictions
