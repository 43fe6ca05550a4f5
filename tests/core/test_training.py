"""Training smoke tests on a small generated catalogue, with the real encoders: the loss goes down,
accuracy beats chance, runs are recorded, checkpoints ship and classify, evaluation runs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from core.data.catalogue_folder import read_catalogue_folder
from core.evaluation.calibrate import calibrate_models
from core.evaluation.catalogue import evaluate_catalogue
from core.inference.category_classifier import CategoryClassifier, NothingToClassify
from core.models.manifest import read_manifest, verify_model_file
from core.models.release import ship_models
from core.training.hyperparameters import DEFAULTS, with_overrides
from core.training.trainer import RunResult, Trainer, TrainingError
from db.runs import checkpoint_file, run_split
from db.session import make_engine, session_scope
from db.tables import RunEpoch, RunPrediction, TrainingRun
from tests.helpers import CLASSES, generated_catalogue, generated_photo, use_home


@pytest.mark.parametrize("kind", ["image", "text", "combined"])
def test_loss_goes_down_and_accuracy_beats_chance(trained: dict[str, object], kind: str) -> None:
    result: RunResult = trained[kind]  # type: ignore[assignment]
    losses = [epoch.train_loss for epoch in result.history]
    assert losses[-1] < losses[0]
    assert result.best_val_accuracy > 0.5  # chance is 1/3
    assert result.test_metrics["accuracy"] > 0.5
    assert result.checkpoint.is_file()


def test_runs_are_recorded_with_split_epochs_and_predictions(trained: dict[str, object]) -> None:
    engine = trained["engine"]
    with session_scope(engine) as session:  # type: ignore[arg-type]
        runs = session.scalars(select(TrainingRun).order_by(TrainingRun.id)).all()
        assert [run.model_kind for run in runs] == ["image", "text", "combined"]
        assert all(run.status == "finished" and run.finished_at and run.best_epoch for run in runs)
        assert runs[0].hyperparameters["lr"] == 0.01 and runs[0].split_seed == 42
        assert runs[1].encoder_ids["text_layer"] == 5
        image_run = runs[0]
        assert session.scalar(select(func.count()).select_from(RunEpoch).where(RunEpoch.run_id == image_run.id)) == 6
        split = run_split(engine, image_run.id)  # type: ignore[arg-type]
        assert len(split) == 72
        predictions = session.scalars(select(RunPrediction).where(RunPrediction.run_id == image_run.id)).all()
        # Validation and test photos only, each on its product's side of the split, probabilities summing to 1.
        assert predictions and all(prediction.part == split[prediction.product_id] != "train" for prediction in predictions)
        assert all(abs(sum(prediction.probabilities) - 1) < 1e-3 for prediction in predictions)
        # Every model of the run shares one split: the combined model never saw the text model's test products.
        text_split = run_split(engine, runs[1].id)  # type: ignore[arg-type]
        assert text_split == split


def test_combined_model_refuses_a_text_model_from_another_split(trained: dict[str, object]) -> None:
    trainer: Trainer = trained["trainer"]  # type: ignore[assignment]
    with pytest.raises(TrainingError, match="same split"):
        trainer.train_combined(trained["text"].checkpoint, with_overrides(DEFAULTS["combined"], seed=1, epochs=1))  # type: ignore[attr-defined]


def test_interrupted_run_is_marked_stopped(trained: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    trainer: Trainer = trained["trainer"]  # type: ignore[assignment]
    from db.runs import DatabaseRunRecorder

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(DatabaseRunRecorder, "record_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_image(with_overrides(DEFAULTS["image"], epochs=2, val_fraction=0.25, test_fraction=0.25))
    with session_scope(trained["engine"]) as session:  # type: ignore[arg-type]
        last = session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc())).first()
        assert last.status == "stopped" and "interrupted" in last.note


def test_shipped_models_classify_and_evaluate(trained: dict[str, object], tmp_path: Path) -> None:
    checkpoints = {kind: trained[kind].checkpoint for kind in ("image", "text", "combined")}  # type: ignore[attr-defined]
    manifest = ship_models(checkpoints, tmp_path / "models", catalogue_fingerprint="test")
    assert set(manifest["models"]) == {"image", "text", "combined"} and manifest["labels"] == sorted(CLASSES)
    assert json.loads((tmp_path / "models" / "manifest.json").read_text())["models"]["image"]["preprocessing"]["id"] == "efficientnet-lite0"
    classifier = CategoryClassifier(tmp_path / "models")

    rng = random.Random(99)
    photo = generated_photo(CLASSES["Sports, Leisure & Travel"][1], "ellipse", rng)
    both = classifier.classify(images=[photo], text="mountain bike for sale")
    assert both.model == "combined" and both.category == "Sports, Leisure & Travel"
    assert len(both.top) == 3 and abs(sum(p for _, p in both.top) - 1) < 1e-3
    assert set(both.probabilities) == {"image", "text", "combined"}
    assert classifier.keyword_scorer is not None and classifier.models["combined"].config["keyword_dim"] == 3
    assert classifier.classify(text="pram and cot").model == "text"
    assert classifier.classify(images=[photo]).model == "image"
    with pytest.raises(NothingToClassify):
        classifier.classify(text="  !!! ")

    catalogue, _report = read_catalogue_folder(trained["source"])  # type: ignore[arg-type]
    results = evaluate_catalogue(classifier, catalogue)
    assert results["image"]["n"] == len(catalogue.images) and results["text"]["n"] == results["combined"]["n"] == 72
    for kind in ("image", "text", "combined"):
        metrics = results[kind]
        assert set(metrics) >= {"accuracy", "top3_accuracy", "macro_f1", "n", "labels", "confusion_matrix", "per_class"}
        assert metrics["accuracy"] > 0.5
        assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"]


def test_calibrated_models_carry_their_calibration_and_decide_with_it(trained: dict[str, object], tmp_path: Path) -> None:
    models = tmp_path / "models"
    ship_models({kind: trained[kind].checkpoint for kind in ("image", "text", "combined")}, models, catalogue_fingerprint="test")  # type: ignore[attr-defined]
    raw = CategoryClassifier(models)
    assert not raw.calibrations and raw.classify(text="pram and cot").as_json()["confident"] is None
    trainer: Trainer = trained["trainer"]  # type: ignore[assignment]
    calibrations = calibrate_models(models, trainer.catalogue, cache_dir=trained["home"] / "cache")  # type: ignore[operator]
    assert set(calibrations) == {"image", "text", "combined"}
    manifest = read_manifest(models)
    for kind in ("image", "text", "combined"):
        assert verify_model_file(models / f"{kind}.pt")  # the checksum follows the rewritten file
        assert manifest["models"][kind]["calibration"]["threshold"] == pytest.approx(calibrations[kind].threshold, abs=1e-6)

    classifier = CategoryClassifier(models)
    assert set(classifier.calibrations) == {"image", "text", "combined"}
    answer = classifier.classify(text="pram and cot")
    assert np.allclose(
        answer.probabilities["text"],
        calibrations["text"].probabilities(np.asarray([raw.classify(text="pram and cot").probabilities["text"]]))[0],
    )
    assert isinstance(answer.confident, bool) and answer.prediction_set and answer.prediction_set[0] == answer.category
    assert answer.confident == (answer.top[0][1] >= calibrations["text"].threshold)
    assert answer.verdict in {f"{answer.category} (confident)", "one of: " + ", ".join(answer.prediction_set)}

    catalogue, _report = read_catalogue_folder(trained["source"])  # type: ignore[arg-type]
    results = evaluate_catalogue(classifier, catalogue)
    for kind in ("image", "text", "combined"):
        assert {"ece", "ece_uncalibrated", "reliability", "coverage", "confident", "prediction_sets"} <= set(results[kind])
        assert sum(row["count"] for row in results[kind]["reliability"]) == results[kind]["n"]


def test_calibrate_command_calibrates_a_folder_and_says_what_it_chose(
    trained: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    models = tmp_path / "models"
    ship_models({kind: trained[kind].checkpoint for kind in ("image", "text", "combined")}, models, catalogue_fingerprint="test")  # type: ignore[attr-defined]
    home = trained["home"]
    use_home(monkeypatch, home, database_url=f"sqlite:///{home / 'catalogue.db'}", media_dir=home / "media")  # type: ignore[operator]
    assert main(["calibrate", "--models", str(models), "--json", "--target-accuracy", "0.9"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["models"] == str(models) and set(payload["calibration"]) == {"image", "text", "combined"}
    assert all(entry["target_accuracy"] == 0.9 for entry in payload["calibration"].values())
    assert all(
        entry["confidence_map"] is None or set(entry["confidence_map"]) == {"slope", "intercept"}
        for entry in payload["calibration"].values()
    )
    assert read_manifest(models)["models"]["text"]["calibration"] == payload["calibration"]["text"]
    assert main(["calibrate", "--models", str(tmp_path / "nowhere")]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_image_model_with_fine_tuned_backbone_blocks(trained: dict[str, object], tmp_path: Path) -> None:
    trainer: Trainer = trained["trainer"]  # type: ignore[assignment]
    tuned = trainer.train_image(
        with_overrides(DEFAULTS["image"], epochs=4, lr=0.01, finetune_blocks=1, val_fraction=0.25, test_fraction=0.25, batch_size=8)
    )
    assert tuned.test_metrics["accuracy"] > 0.5
    from core.models.checkpoints import load_checkpoint

    loaded = load_checkpoint(tuned.checkpoint)
    assert loaded.config["finetune_blocks"] == 1 and any(name.startswith("tail.") for name, _ in loaded.model.named_parameters())
    ship_models(
        {"image": tuned.checkpoint, "text": trained["text"].checkpoint, "combined": trained["combined"].checkpoint},  # type: ignore[attr-defined]
        tmp_path / "models",
        catalogue_fingerprint="test",
    )
    classifier = CategoryClassifier(tmp_path / "models")
    photo = generated_photo(CLASSES["Baby & Kids Stuff"][1], "triangle", random.Random(5))
    prediction = classifier.classify(images=[photo, photo], text="pram")
    assert prediction.model == "combined" and prediction.category == "Baby & Kids Stuff"
    assert classifier.classify(images=[photo]).category == "Baby & Kids Stuff"


def test_killed_training_command_marks_the_run_stopped(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from core.settings import PROJECT_ROOT

    source = generated_catalogue(tmp_path / "source", per_class=8)
    environment = {**os.environ, "MARKETPLACE_HOME": str(tmp_path / "home")}
    environment.pop("DATABASE_URL", None)
    subprocess.run(
        [sys.executable, "-m", "core", "import", str(source), "--quiet"],
        cwd=PROJECT_ROOT,
        env=environment,
        check=True,
        capture_output=True,
        timeout=300,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "core", "train", "--model", "image", "--epochs", "100000", "--quiet"],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'home' / 'catalogue.db'}")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        with session_scope(engine) as session:
            if session.scalar(select(func.count()).select_from(RunEpoch)):
                break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    with session_scope(engine) as session:
        run = session.scalars(select(TrainingRun)).one()
        assert run.status == "stopped" and run.checkpoint_path and checkpoint_file(run.checkpoint_path, root=tmp_path / "home").is_file()


def test_shipping_refuses_a_combined_model_built_on_another_text_run(trained: dict[str, object], tmp_path: Path) -> None:
    from core.models.checkpoints import ModelFileError

    trainer: Trainer = trained["trainer"]  # type: ignore[assignment]
    other_text = trainer.train_text(with_overrides(DEFAULTS["text"], epochs=1, finetune_layers=0, val_fraction=0.25, test_fraction=0.25))
    models = tmp_path / "models"
    ship_models({kind: trained[kind].checkpoint for kind in ("image", "text", "combined")}, models, catalogue_fingerprint="test")  # type: ignore[attr-defined]
    with pytest.raises(ModelFileError, match="ship a text run with the combined run built on it"):
        ship_models({"text": other_text.checkpoint}, models, catalogue_fingerprint="test")
    CategoryClassifier(models)  # the refused shipment left the folder as it was


def test_combined_model_on_cross_fitted_text_logits(trained: dict[str, object], tmp_path: Path) -> None:
    from core.models.checkpoints import load_checkpoint

    trainer: Trainer = trained["trainer"]  # type: ignore[assignment]
    text: RunResult = trained["text"]  # type: ignore[assignment]
    hyper = with_overrides(
        DEFAULTS["combined"], epochs=12, lr=0.01, step_size=6, text_folds=2, val_fraction=0.25, test_fraction=0.25, batch_size=8
    )
    split = trainer.split(hyper)
    parts = np.array([split[product_id] for product_id in trainer.product_ids])
    train_rows = np.where(parts == "train")[0]
    text_model = load_checkpoint(text.checkpoint)
    cross_fitted = trainer.cross_fitted_text_logits(text_model, train_rows, folds=2, seed=42)
    own = trainer.text_model_features(text_model, max_tokens=128, logits=True)
    # Validation and test products get the text model's own logits; training products get fold models'.
    assert cross_fitted.shape == own.shape == (72, 3)
    np.testing.assert_array_equal(cross_fitted[parts != "train"], own[parts != "train"])
    assert np.abs(cross_fitted[train_rows] - own[train_rows]).max(axis=1).min() > 1e-3

    combined = trainer.train_combined(text.checkpoint, hyper)
    assert combined.test_metrics["accuracy"] > 0.5
    ship_models(
        {"image": trained["image"].checkpoint, "text": text.checkpoint, "combined": combined.checkpoint},  # type: ignore[attr-defined]
        tmp_path / "models",
        catalogue_fingerprint="test",
    )
    classifier = CategoryClassifier(tmp_path / "models")
    assert classifier.models["combined"].config["text_input"] == "logits" and classifier.models["combined"].config["text_dim"] == 3
    photo = generated_photo(CLASSES["Baby & Kids Stuff"][1], "triangle", random.Random(5))
    prediction = classifier.classify(images=[photo], text="pram")
    assert prediction.model == "combined" and prediction.category == "Baby & Kids Stuff"
    catalogue, _report = read_catalogue_folder(trained["source"])  # type: ignore[arg-type]
    assert evaluate_catalogue(classifier, catalogue)["combined"]["accuracy"] > 0.5


def test_combined_model_built_on_a_shipped_text_model_ships_beside_it(
    trained: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A catalogue with no runs of its own trains a combined model on the shipped text model file; `ship`
    then replaces only the combined model: the image and text models it never trained stay."""
    from cli.main import main
    from db.importer import import_catalogue

    models = tmp_path / "models"
    ship_models({kind: trained[kind].checkpoint for kind in ("image", "text", "combined")}, models, catalogue_fingerprint="test")  # type: ignore[attr-defined]
    shipped = read_manifest(models)["models"]
    home = tmp_path / "home"
    use_home(monkeypatch, home)
    monkeypatch.setenv("MARKETPLACE_MODELS", str(models))
    import_catalogue(trained["source"], engine=make_engine(f"sqlite:///{home / 'catalogue.db'}"), media_dir=home / "images")  # type: ignore[arg-type]
    small = ["--val-fraction", "0.25", "--test-fraction", "0.25", "--batch-size", "8", "--quiet"]
    assert main(["train", "--model", "combined", "--text-model", str(models / "text.pt"), "--epochs", "3", "--lr", "0.01", *small]) == 0
    assert main(["ship", "--quiet"]) == 0
    manifest = read_manifest(models)["models"]
    assert manifest["combined"]["hyperparameters"]["epochs"] == 3 != shipped["combined"]["hyperparameters"]["epochs"]
    assert manifest["combined"]["encoders"]["text_model_run"] == shipped["text"]["run_id"]
    # The image and text models stay (calibrated again with the set, so their files' checksums are renewed).
    assert {kind: manifest[kind]["run_id"] for kind in ("image", "text")} == {kind: shipped[kind]["run_id"] for kind in ("image", "text")}
    assert all(verify_model_file(models / f"{kind}.pt") == manifest[kind]["sha256"] for kind in ("image", "text", "combined"))
    assert CategoryClassifier(models).classify(text="pram").model == "text"
    assert main(["train", "--model", "combined", "--text-model", str(tmp_path / "none.pt"), *small]) == 1
    assert "model file not found" in capsys.readouterr().err
