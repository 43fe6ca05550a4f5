"""The shipped models under models/: they load, classify obvious shared listings correctly, and
`python -m core classify` / `evaluate` keep their JSON shapes and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cli.main import main
from core.settings import PROJECT_ROOT, get_settings

MODELS = get_settings().models_dir

# Listings whose category no reasonable model could miss, looked up by words in their names.
OBVIOUS = [
    ("iphone 12", "Phones, Mobile Phones & Telecoms"),
    ("sofa", "Home & Garden"),
    ("ps4", "Video Games & Consoles"),
    ("pram", "Baby & Kids Stuff"),
]


def _obvious_listing(marketplace_dir: Path, words: str, category: str) -> tuple[str, list[Path]]:
    products = pd.read_csv(marketplace_dir / "Products.csv", lineterminator="\n")
    images = pd.read_csv(marketplace_dir / "Images.csv", lineterminator="\n")
    matches = products[products["product_name"].str.lower().str.contains(words) & products["category"].str.startswith(category)]
    for _, row in matches.iterrows():
        photos = [marketplace_dir / "images" / f"{image_id}.jpg" for image_id in images.loc[images["product_id"] == row["id"], "id"]]
        if photos:
            return f"{row['product_name']}. {row['product_description']}", photos
    raise AssertionError(f"no listing for {words!r} in {category}")


def test_manifest_describes_the_shipped_models() -> None:
    manifest = json.loads((MODELS / "manifest.json").read_text())
    assert set(manifest["models"]) == {"image", "text", "combined"}
    assert len(manifest["labels"]) == 13
    assert manifest["models"]["image"]["preprocessing"]["id"] == "efficientnet-lite0"
    assert manifest["training_data_fingerprint"]
    for entry in manifest["models"].values():  # calibrated on validation products, the two halves apart
        calibration = entry["calibration"]
        assert calibration["method"] in {"temperature", "vector"} and 0 < calibration["threshold"] <= 1
        assert calibration["fitted_on"]["scaling_and_threshold"] > 400 and calibration["fitted_on"]["prediction_sets"] > 400
    assert sum(path.stat().st_size for path in MODELS.iterdir()) < 25_000_000


@pytest.mark.parametrize(("words", "category"), OBVIOUS)
def test_shipped_models_classify_obvious_listings(shipped_classifier, marketplace_dir: Path, words: str, category: str) -> None:  # type: ignore[no-untyped-def]
    from core.data.images import open_image

    text, photo_paths = _obvious_listing(marketplace_dir, words, category)
    prediction = shipped_classifier.classify(images=[open_image(path) for path in photo_paths], text=text)
    assert prediction.model == "combined"
    assert prediction.category == category
    assert shipped_classifier.classify(text=text).category == category


def test_classify_cli_prints_the_json_shape(marketplace_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, photos = _obvious_listing(marketplace_dir, "iphone 12", "Phones, Mobile Phones & Telecoms")
    assert main(["classify", "--image", str(photos[0]), "--text", text]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"category", "model", "top", "confident", "prediction_set"} and payload["model"] == "combined"
    assert len(payload["top"]) == 5 and all(set(entry) == {"category", "probability"} for entry in payload["top"])
    assert payload["category"] == payload["top"][0]["category"] == "Phones, Mobile Phones & Telecoms"
    # An obvious listing: the shipped combined model is sure of it, and its set is that one category.
    assert payload["confident"] is True and payload["prediction_set"] == ["Phones, Mobile Phones & Telecoms"]
    assert main(["classify", "--image", str(photos[0])]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "image"


@pytest.mark.parametrize("content", [None, b"", b"not an image at all", b"\xff\xd8\xff\xe0\x00\x10JFIF truncated"])
def test_classify_cli_refuses_bad_photos_in_one_line(tmp_path: Path, content: bytes | None) -> None:
    photo = tmp_path / "photo.jpg"
    if content is not None:
        photo.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "core", "classify", "--image", str(photo)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "photo.jpg" in lines[0]


def test_classify_cli_needs_an_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--text", "   "]) == 1
    assert "give --image" in capsys.readouterr().err


def test_evaluate_on_a_subset_of_the_shared_data(marketplace_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A temporary 65-product subset in tmp_path (the importer refuses symlinks out of images/, so photos are copied)."""
    products = pd.read_csv(marketplace_dir / "Products.csv", lineterminator="\n")
    images = pd.read_csv(marketplace_dir / "Images.csv", lineterminator="\n")
    subset = products.groupby(products["category"].str.split(" / ").str[0]).head(5)
    folder = tmp_path / "subset"
    (folder / "images").mkdir(parents=True)
    subset.to_csv(folder / "Products.csv", index=False, lineterminator="\n")
    subset_images = images[images["product_id"].isin(subset["id"])]
    subset_images.to_csv(folder / "Images.csv", index=False, lineterminator="\n")
    for image_id in subset_images["id"]:
        shutil.copyfile(marketplace_dir / "images" / f"{image_id}.jpg", folder / "images" / f"{image_id}.jpg")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--data", str(folder), "--out", str(out), "--quiet"]) == 0
    results = json.loads(out.read_text())
    assert results["text"]["n"] == results["combined"]["n"] == len(subset) == 65
    assert results["image"]["n"] == len(subset_images)
    for kind in ("image", "text", "combined"):
        metrics = results[kind]
        assert set(metrics) == {
            *("accuracy", "top3_accuracy", "macro_f1", "n", "labels", "confusion_matrix", "per_class"),
            *("ece", "ece_floor", "reliability", "ece_uncalibrated", "reliability_uncalibrated"),
            *("coverage", "confident", "prediction_sets"),
        }
        assert len(metrics["confusion_matrix"]) == 13 and sum(map(sum, metrics["confusion_matrix"])) == metrics["n"]
        assert 0 < metrics["ece_floor"] < 0.5, "65 products are too few for a small ECE even from a perfect model"
        assert 0 <= metrics["ece"] <= 1 and sum(row["count"] for row in metrics["reliability"]) == metrics["n"]
        assert 0.5 <= metrics["prediction_sets"]["coverage"] <= 1 and metrics["prediction_sets"]["mean_size"] >= 1
    assert results["combined"]["accuracy"] > 0.6
    assert "combined: accuracy" in capsys.readouterr().out
