"""Whole-catalogue work off the page: background jobs report progress and results, an embedding
run killed part-way resumes from its last checkpoint, and held-out predictions stored with the
models come back only for the catalogue they were made on."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from core.encoders.embedding_store import EmbeddingStore
from core.evaluation.held_out import HELD_OUT_FILE, store_held_out_predictions, stored_held_out_predictions
from core.evaluation.metrics import PredictionSet
from core.models.manifest import HELD_OUT, ModelFileError, read_manifest, write_manifest
from core.runtime import background

LABELS = ["Appliances", "Clothes", "Phones"]


def test_a_job_reports_progress_then_its_result() -> None:
    release = threading.Event()

    def work(progress: background.StageProgress) -> str:
        progress("photos", 3, 10)
        release.wait(5)
        return "done"

    key = "test-progress"
    background.clear(key)
    state = background.start(key, work)
    assert background.start(key, lambda _: pytest.fail("one job per key")) is state
    deadline_state = background.wait(key, timeout=0.2)
    assert deadline_state is not None and deadline_state.running
    assert state.describe() == "photos: 3 of 10 (30%)" and state.fraction == pytest.approx(0.3)
    release.set()
    finished = background.wait(key, timeout=5)
    assert finished is not None and not finished.running and finished.result == "done" and finished.error is None
    background.clear(key)
    assert background.status(key) is None


def test_a_failed_job_keeps_its_message_until_cleared() -> None:
    def work(_: background.StageProgress) -> None:
        raise OSError("disk full")

    key = "test-failure"
    background.clear(key)
    background.start(key, work)
    state = background.wait(key, timeout=5)
    assert state is not None and state.error == "OSError: disk full" and state.describe() == "failed: OSError: disk full"
    assert background.start(key, lambda _: "again") is state  # not retried behind the user's back
    background.clear(key)
    background.start(key, lambda _: "again")
    assert background.wait(key, timeout=5).result == "again"  # type: ignore[union-attr]
    background.clear(key)


def test_an_interrupted_embedding_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    ids = [f"item{index}" for index in range(10)]
    computed: list[str] = []

    def compute_until_killed(batch: list[str]) -> np.ndarray:
        if len(computed) >= 6:
            raise KeyboardInterrupt  # the process dies part-way
        computed.extend(batch)
        return np.array([[float(item[4:])] * 4 for item in batch], np.float32)

    store = EmbeddingStore(tmp_path, kind="test", encoder_id="fake")
    with pytest.raises(KeyboardInterrupt):
        store.get(ids, ["h"] * 10, compute_until_killed, batch_size=3, checkpoint_seconds=0)
    assert store.missing(ids, ["h"] * 10) == 4  # the first two batches were written

    resumed: list[str] = []

    def compute(batch: list[str]) -> np.ndarray:
        resumed.extend(batch)
        return np.array([[float(item[4:])] * 4 for item in batch], np.float32)

    vectors = store.get(ids, ["h"] * 10, compute, batch_size=3)
    assert resumed == ids[6:]
    assert vectors[:, 0].tolist() == list(range(10))
    assert store.missing(ids, ["h"] * 9 + ["changed"]) == 1


def prediction_sets() -> dict[str, PredictionSet]:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=6)
    ids = [f"p{index}" for index in range(6)]
    return {
        kind: PredictionSet.from_arrays(
            f"active {kind} model",
            kind,
            LABELS,
            item_ids=ids,
            product_ids=ids,
            y_true=[0, 1, 2, 0, 1, 2],
            probabilities=probabilities,
            part="test",
        )
        for kind in ("image", "text", "combined")
    }


def test_held_out_predictions_round_trip_for_their_own_catalogue_only(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"models": {}, "labels": LABELS})
    original = prediction_sets()
    store_held_out_predictions(tmp_path, original, catalogue_fingerprint="abc")
    loaded = stored_held_out_predictions(tmp_path, catalogue_fingerprint="abc")
    assert loaded is not None and set(loaded) == {"image", "text", "combined"}
    assert loaded["combined"].metrics() == original["combined"].metrics()
    assert loaded["text"].frame["item_id"].tolist() == original["text"].frame["item_id"].tolist()
    assert stored_held_out_predictions(tmp_path, catalogue_fingerprint="another catalogue") is None

    damaged = tmp_path / HELD_OUT_FILE
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="damaged or changed"):
        stored_held_out_predictions(tmp_path, catalogue_fingerprint="abc")


def test_shipping_other_models_drops_stale_held_out_predictions(trained: dict[str, object], tmp_path: Path) -> None:
    from core.models.release import ship_models

    checkpoints = {kind: trained[kind].checkpoint for kind in ("image", "text", "combined")}  # type: ignore[attr-defined]
    ship_models(checkpoints, tmp_path, catalogue_fingerprint="abc")
    store_held_out_predictions(tmp_path, prediction_sets(), catalogue_fingerprint="abc")
    assert HELD_OUT in read_manifest(tmp_path)
    ship_models({"image": checkpoints["image"]}, tmp_path, catalogue_fingerprint="abc")
    assert HELD_OUT not in read_manifest(tmp_path) and not (tmp_path / HELD_OUT_FILE).exists()


def test_ship_stores_the_held_out_predictions_the_app_would_compute(
    trained: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import main
    from core.evaluation.catalogue import held_out_predictions
    from core.inference.category_classifier import CategoryClassifier
    from db.queries import training_catalogue
    from db.session import session_scope
    from tests.helpers import use_home

    home = trained["home"]
    assert isinstance(home, Path)
    use_home(monkeypatch, home, media_dir=home / "media")
    monkeypatch.setenv("MARKETPLACE_MODELS", str(tmp_path / "models"))
    # The fixture's own runs: other tests of the session train more runs in the same home.
    runs = {kind: str(trained[kind].run_id) for kind in ("image", "text", "combined")}  # type: ignore[attr-defined]
    assert main(["ship", "--quiet", "--image", runs["image"], "--text", runs["text"], "--combined", runs["combined"]]) == 0
    with session_scope(trained["engine"]) as session:  # type: ignore[arg-type]
        catalogue = training_catalogue(session, media_dir=home / "media")
    stored = stored_held_out_predictions(tmp_path / "models", catalogue_fingerprint=catalogue.fingerprint())
    fresh = held_out_predictions(CategoryClassifier(tmp_path / "models"), catalogue, cache_dir=home / "cache")
    assert stored is not None
    for kind in ("image", "text", "combined"):
        assert stored[kind].frame["item_id"].tolist() == fresh[kind].frame["item_id"].tolist()
        assert np.allclose(np.stack(stored[kind].frame["probabilities"]), np.stack(fresh[kind].frame["probabilities"]), atol=1e-5)


def test_the_shipped_models_carry_their_held_out_predictions_for_the_shared_catalogue(shared_catalogue) -> None:  # type: ignore[no-untyped-def]
    from core.settings import PROJECT_ROOT
    from db.queries import training_catalogue
    from db.session import session_scope

    models = PROJECT_ROOT / "models"
    with session_scope(shared_catalogue.engine) as session:
        catalogue = training_catalogue(session, media_dir=shared_catalogue.home / "images")
    stored = stored_held_out_predictions(models, catalogue_fingerprint=catalogue.fingerprint())
    assert stored is not None, "models/held_out.npz was made on another catalogue: python -m core ship --predictions-only"
    manifest = read_manifest(models)
    for kind, predictions in stored.items():
        metrics = predictions.metrics()
        recorded = manifest["models"][kind]["test_metrics"]
        assert metrics["n"] == recorded["n"]
        assert abs(metrics["accuracy"] - recorded["accuracy"]) <= 0.005  # fp32 + ONNX here against the training machine's bf16
