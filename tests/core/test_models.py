"""Model shapes, the split's no-leak guarantee, the embedding cache, checkpoints and backbones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.splits import TEST, TRAIN, VALIDATION, cross_fit, split_products, stratified_folds
from core.encoders.backbones import BACKBONES, BackboneUnavailable, get_backbone
from core.encoders.embedding_store import EmbeddingStore
from core.models.checkpoints import ModelFileError, load_checkpoint, save_checkpoint
from core.models.networks import BRANCH_DIM, CombinedClassifier, ImageHead, TextCNN


def test_image_head_shapes() -> None:
    head = ImageHead(1280, 13)
    assert head(torch.randn(4, 1280)).shape == (4, 13)


def test_text_cnn_shapes_with_and_without_encoder_layers(text_encoder) -> None:  # type: ignore[no-untyped-def]
    tokens, mask = torch.randn(3, 17, 384), torch.ones(3, 17, dtype=torch.bool)
    mask[0, 5:] = False
    plain = TextCNN(13, channels=64)
    assert plain(tokens, mask).shape == (3, 13)
    assert plain.features(tokens, mask).shape == (3, 64)
    tuned = TextCNN(13, channels=64, top_layers=list(text_encoder.model.encoder.layer[4:]), encoder_config=text_encoder.model.config)
    assert tuned(tokens, mask).shape == (3, 13)
    assert len(tuned.top_layers) == 2
    # Padding never changes the answer: a text alone equals the same text padded in a batch.
    tuned.eval()
    with torch.no_grad():
        alone = tuned(tokens[:1, :5], mask[:1, :5])
        padded = tuned(tokens[:1], mask[:1])
    assert torch.allclose(alone, padded, atol=1e-4)


def test_combined_classifier_branches_and_missing_inputs() -> None:
    model = CombinedClassifier(1280, 256, 13).eval()
    image, text = torch.randn(2, 1280), torch.randn(2, 256)
    both = model(image, text, torch.tensor([True, True]), torch.tensor([True, True]))
    assert both.shape == (2, 13)
    assert model.image_branch(image).shape == (2, BRANCH_DIM) and model.text_branch(text).shape == (2, BRANCH_DIM)
    with torch.no_grad():
        model.missing_image.fill_(3.0)
        no_photo = model(image, text, torch.tensor([False, True]), torch.tensor([True, True]))
    assert not torch.allclose(no_photo[0], both[0]) and torch.allclose(no_photo[1], both[1])
    # A missing photo's features are ignored entirely.
    other = model(torch.randn(2, 1280), text, torch.tensor([False, True]), torch.tensor([True, True]))
    assert torch.allclose(other[0], no_photo[0])


def test_split_keeps_each_product_on_one_side_and_is_stratified_and_seeded() -> None:
    products = [f"p{index}" for index in range(500)]
    labels = [f"c{index % 5}" for index in range(500)]
    split = split_products(products, labels, seed=7)
    assert set(split) == set(products)
    parts = np.array([split[product] for product in products])
    assert abs((parts == TEST).mean() - 0.2) < 0.01
    assert abs((parts == VALIDATION).mean() - 0.16) < 0.01
    for label in set(labels):
        in_class = parts[np.array(labels) == label]
        assert abs((in_class == TEST).mean() - 0.2) < 0.02  # every class in proportion
    assert split == split_products(products, labels, seed=7)
    assert split != split_products(products, labels, seed=8)
    # Photos follow their product: a product's photos cannot straddle the split.
    photos = [(f"{product}-photo{k}", product) for product in products for k in range(2)]
    sides = {}
    for _photo, product in photos:
        sides.setdefault(product, set()).add(split[product])
    assert all(len(side) == 1 for side in sides.values())
    with pytest.raises(ValueError, match="unique"):
        split_products(["a", "a"], ["x", "y"])


def test_split_of_tiny_classes_still_assigns_everything() -> None:
    split = split_products(["a", "b", "c", "d", "e"], ["x", "x", "x", "x", "y"], test_fraction=0.2, val_fraction=0.2)
    assert set(split.values()) <= {TRAIN, VALIDATION, TEST} and len(split) == 5


def test_cross_fitting_scores_every_row_from_a_model_that_never_saw_it() -> None:
    labels = np.repeat(np.arange(3), [9, 6, 3])  # the smallest class has 3 members: 3 folds, not 5
    rows = np.arange(2, 18)
    folds = stratified_folds(labels, rows=rows, folds=5, seed=1)
    assert len(folds) == 3
    assert sorted(np.concatenate([score for _, score in folds]).tolist()) == rows.tolist()
    assert all(set(fit) | set(score) == set(rows) and not set(fit) & set(score) for fit, score in folds)
    assert [fold[1].tolist() for fold in folds] == [fold[1].tolist() for fold in stratified_folds(labels, rows=rows, folds=5, seed=1)]

    seen: dict[int, set[int]] = {}
    reports: list[tuple[int, int]] = []

    def fit_and_score(fold: int, fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        seen[fold] = set(fit_rows.tolist())
        return np.full((len(score_rows), 2), fold + 1, np.float32)

    outputs = cross_fit(fit_and_score, folds, n_rows=len(labels), width=2, progress=lambda done, total: reports.append((done, total)))
    assert reports == [(1, 3), (2, 3), (3, 3)]
    assert not outputs[:2].any()  # rows outside `rows` stay zero
    for row in rows:
        fold = int(outputs[row, 0]) - 1
        assert row not in seen[fold]


def test_embedding_store_recomputes_only_new_or_changed_items(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def compute(ids: list[str]) -> np.ndarray:
        calls.append(ids)
        return np.array([[len(item), ord(item[0])] for item in ids], np.float32)

    store = EmbeddingStore(tmp_path, kind="image-features", encoder_id="fake/1")
    first = store.get(["a", "bb", "c"], ["h1", "h1", "h1"], compute)
    assert first.tolist() == [[1, 97], [2, 98], [1, 99]]
    again = EmbeddingStore(tmp_path, kind="image-features", encoder_id="fake/1").get(["c", "a"], ["h1", "h1"], compute)
    assert again.tolist() == [[1, 99], [1, 97]] and calls == [["a", "bb", "c"]]
    store.get(["a", "d"], ["h2", "h1"], compute)
    assert calls[-1] == ["a", "d"]
    assert sorted(store.load()[0]) == ["a", "bb", "c", "d"]  # earlier items kept


def test_checkpoints_round_trip_and_refuse_damaged_files(tmp_path: Path) -> None:
    head = ImageHead(8, 3, hidden=4).eval()
    path = tmp_path / "image.pt"
    config = {"feature_dim": 8, "hidden": 4, "dropout": 0.5, "n_classes": 3}
    save_checkpoint(path, kind="image", model=head, labels=["a", "b", "c"], config=config, info={"run_id": 1})
    loaded = load_checkpoint(path)
    features = torch.randn(2, 8)
    assert torch.allclose(loaded.model(features), head(features)) and loaded.labels == ["a", "b", "c"]
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed, not left behind

    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="image.pt: not a readable model file"):
        load_checkpoint(path)
    with pytest.raises(ModelFileError, match="model file not found"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"something": "else"}, path)
    with pytest.raises(ModelFileError, match="not a model file of this project"):
        load_checkpoint(path)


def test_backbones_carry_their_preprocessing() -> None:
    lite0 = get_backbone("efficientnet-lite0")
    assert (lite0.input_size, lite0.feature_dim, lite0.mean) == (224, 1280, (0.5, 0.5, 0.5))
    assert get_backbone("efficientnet-lite2").input_size == 260
    from PIL import Image

    pixels = lite0.preprocess([Image.new("RGB", (300, 100), (255, 255, 255))])
    assert pixels.shape == (1, 3, 224, 224)
    assert pixels[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0]  # black padding at -1 after normalisation
    assert pixels[0, :, 112, 112].tolist() == [1.0, 1.0, 1.0]
    assert set(BACKBONES) == {"efficientnet-lite0", "efficientnet-lite2", "resnet50"}
    with pytest.raises(ValueError, match="unknown backbone"):
        get_backbone("vgg")


def test_resnet50_refuses_to_run_without_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESNET50_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(BackboneUnavailable, match="will not run with random weights"):
        get_backbone("resnet50").load()


def test_resnet50_loads_weights_from_a_local_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from torchvision.models import resnet50

    weights = tmp_path / "resnet50-local.pth"
    torch.save(resnet50().state_dict(), weights)
    monkeypatch.setenv("RESNET50_WEIGHTS", str(weights))
    model = get_backbone("resnet50").load()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 2048)


def test_int8_checkpoints_are_smaller_and_close(tmp_path: Path) -> None:
    head = ImageHead(1280, 13).eval()
    config = {"feature_dim": 1280, "hidden": 512, "dropout": 0.5, "n_classes": 13}
    save_checkpoint(tmp_path / "half.pt", kind="image", model=head, labels=list("abcdefghijklm"), config=config, info={}, half=True)
    save_checkpoint(tmp_path / "int8.pt", kind="image", model=head, labels=list("abcdefghijklm"), config=config, info={}, int8=True)
    assert (tmp_path / "int8.pt").stat().st_size < 0.6 * (tmp_path / "half.pt").stat().st_size
    features = torch.randn(64, 1280)
    with torch.no_grad():
        expected = torch.softmax(head(features), -1)
        got = torch.softmax(load_checkpoint(tmp_path / "int8.pt").model(features), -1)
    assert (got - expected).abs().max() < 0.02
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() > 0.95
