"""Quality experiments behind the README's "what each extra changed" rows that `python -m core train`
does not reproduce, on the catalogue of the current settings (import the shared data first):

    python -m benchmarks.quality [--only stacking pruning text-folds image-end-to-end] [--quick] [--save FILE.npz]

All use the shipped models' split (seed 42: 20% of products held out as test); nothing of the test
part is fitted on. Out-of-fold scores come from 5 stratified folds over the other 80%.

- stacking: TF-IDF word + char SVM, logistic regressions on MiniLM sentence embeddings and on
  photo-mean features, their out-of-fold scores stacked by a logistic regression (about 1 min);
- pruning: the same stack without the products that confident learning flags as mislabelled,
  and cleanlab's estimate of the share of wrong labels (about 1 min);
- text-folds: the shipped text model's recipe (TextCNN, all 6 encoder layers fine-tuned, 4 epochs)
  trained on each fold, alone (mean of the 5 fold models) and stacked with the above; then the same
  stack with the shipped text model (`models/`, one file) read at inference instead of the 5 fold
  models (about 45 to 55 min);
- image-end-to-end: EfficientNet-Lite0 fine-tuned whole, on photos with random crops and flips
  (about 22 min).

`--quick` runs 2 folds, 1 epoch and a tenth of the photos: a smoke run, not figures to report.
`--save` keeps every model's scores with the labels and the split's rows, to study stacks without
training again (`np.load`: `score_<name>`, `y`, `dev`, `test`, `validation`).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torchvision.transforms.v2 as augmentations
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from benchmarks.common import print_table
from core.data.catalogue import Catalogue
from core.data.images import open_image
from core.data.splits import TEST, VALIDATION, Folds, cross_fit, split_products, stratified_folds
from core.encoders.backbones import DEFAULT_BACKBONE, get_backbone
from core.models.networks import FineTunedImageClassifier
from core.quality.label_issues import ProductFeatures, catalogue_features
from core.runtime.compute import autocast
from core.settings import get_settings
from core.training.baselines import tfidf_category_model
from core.training.hyperparameters import DEFAULTS, with_overrides
from core.training.loop import MAX_GRAD_NORM
from core.training.trainer import Trainer
from db.runs import DatabaseRunRecorder

SPLIT_SEED = 42
EXPERIMENTS = ("stacking", "pruning", "text-folds", "image-end-to-end")


@dataclass
class Setup:
    catalogue: Catalogue
    features: ProductFeatures
    y: np.ndarray  # per product
    dev: np.ndarray  # rows of the non-test products
    test: np.ndarray
    validation: np.ndarray  # the training runs' validation part of dev
    folds: int
    scores: dict[str, np.ndarray]  # name -> (N, classes): out-of-fold on dev, fitted on all of dev for test

    @property
    def n_classes(self) -> int:
        return int(self.y.max()) + 1

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Product id -> its row."""
        return {product.id: row for row, product in enumerate(self.catalogue.products)}


def load_setup(*, folds: int) -> Setup:
    from db.queries import training_catalogue
    from db.session import make_engine, session_scope

    settings = get_settings()
    with session_scope(make_engine(settings.database_url)) as session:
        catalogue = training_catalogue(session, media_dir=settings.media_dir)
    if not catalogue.products:
        raise SystemExit("the catalogue is empty: import the shared data first (python -m core import DIR)")
    features = catalogue_features(catalogue, cache_dir=settings.cache_dir)
    label_index = {label: index for index, label in enumerate(catalogue.labels)}
    y = np.array([label_index[product.label] for product in catalogue.products])
    split = split_products(
        [product.id for product in catalogue.products], [product.label for product in catalogue.products], seed=SPLIT_SEED
    )
    parts = np.array([split[product.id] for product in catalogue.products])
    return Setup(
        catalogue, features, y, np.where(parts != TEST)[0], np.where(parts == TEST)[0], np.where(parts == VALIDATION)[0], folds, {}
    )


def fold_splits(setup: Setup) -> Folds:
    return stratified_folds(setup.y, rows=setup.dev, folds=setup.folds, seed=0)


def out_of_fold(setup: Setup, fit_and_score: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Scores of every dev row from a model fitted on the other folds; of the test rows from one fitted on all of dev."""
    scores = cross_fit(
        lambda _fold, fit_rows, score_rows: fit_and_score(fit_rows, score_rows),
        fold_splits(setup),
        n_rows=len(setup.y),
        width=setup.n_classes,
    )
    scores[setup.test] = fit_and_score(setup.dev, setup.test)
    return scores


def frozen_scores(setup: Setup) -> None:
    texts = np.asarray(setup.features.texts, dtype=object)
    features, has_image = setup.features, setup.features.has_image

    def tfidf(fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        return tfidf_category_model().fit(texts[fit_rows], setup.y[fit_rows]).decision_function(texts[score_rows])

    def sentences(fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        model = LogisticRegression(C=2.0, max_iter=2000).fit(features.text[fit_rows], setup.y[fit_rows])
        return model.decision_function(features.text[score_rows])

    def photos(fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        with_photo = fit_rows[has_image[fit_rows]]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000)).fit(
            features.image[with_photo], setup.y[with_photo]
        )
        return model.decision_function(features.image[score_rows])

    for name, fit_and_score in (("tfidf", tfidf), ("sentences", sentences), ("photos", photos)):
        if name not in setup.scores:
            setup.scores[name] = out_of_fold(setup, fit_and_score)


def stacker() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))


def stacked(
    setup: Setup,
    names: tuple[str, ...],
    *,
    rows: np.ndarray | None = None,
    predict: np.ndarray | None = None,
    at_inference: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Predictions for `predict` (default: the test part) of a logistic regression on the named out-of-fold
    scores of `rows` (default: all dev). `at_inference` replaces named scores on the predicted rows only:
    another model of the same kind standing in for the fold models once the stack is fitted."""
    fit_rows = setup.dev if rows is None else rows
    predict_rows = setup.test if predict is None else predict
    replaced = at_inference or {}
    fit_inputs = np.hstack([setup.scores[name] for name in names])
    predict_inputs = np.hstack([replaced.get(name, setup.scores[name]) for name in names])
    return stacker().fit(fit_inputs[fit_rows], setup.y[fit_rows]).predict(predict_inputs[predict_rows])


def stack_figures(setup: Setup, names: tuple[str, ...], *, at_inference: dict[str, np.ndarray] | None = None) -> str:
    """Validation accuracy of the stack fitted on the training part's out-of-fold scores alone (what a
    choice is made on), then the test figures of the stack fitted on all of dev."""
    training = np.setdiff1d(setup.dev, setup.validation)
    on_validation = stacked(setup, names, rows=training, predict=setup.validation, at_inference=at_inference)
    on_test = stacked(setup, names, at_inference=at_inference)
    return validation_figure(setup, on_validation) + figures(setup.y[setup.test], on_test)


def validation_figure(setup: Setup, predicted: np.ndarray) -> str:
    return f"validation {accuracy_score(setup.y[setup.validation], predicted):.3f}, "


def figures(truth: np.ndarray, predicted: np.ndarray) -> str:
    return f"test accuracy {accuracy_score(truth, predicted):.3f}, macro-F1 {f1_score(truth, predicted, average='macro'):.3f}"


def run_stacking(setup: Setup) -> list[tuple[str, str]]:
    frozen_scores(setup)
    truth = setup.y[setup.test]
    rows = [(f"{name} alone", figures(truth, setup.scores[name][setup.test].argmax(1))) for name in ("tfidf", "sentences", "photos")]
    return rows + [("stack: tfidf + sentences + photos", stack_figures(setup, ("tfidf", "sentences", "photos")))]


def run_pruning(setup: Setup) -> list[tuple[str, str]]:
    from cleanlab.count import estimate_joint
    from cleanlab.filter import find_label_issues

    frozen_scores(setup)
    names = ("tfidf", "sentences", "photos")
    inputs = np.hstack([setup.scores[name] for name in names])
    probabilities = cross_val_predict(stacker(), inputs[setup.dev], setup.y[setup.dev], cv=5, method="predict_proba")
    flagged = find_label_issues(setup.y[setup.dev], probabilities)
    noise = 1 - float(np.trace(estimate_joint(setup.y[setup.dev], probabilities)))
    kept = setup.dev[~flagged]
    return [
        ("non-test labels flagged / estimated wrong", f"{int(flagged.sum())} of {len(setup.dev)} / {noise:.1%}"),
        ("stack without the flagged products", figures(setup.y[setup.test], stacked(setup, names, rows=kept))),
    ]


def run_text_folds(setup: Setup, *, epochs: int) -> list[tuple[str, str]]:
    """Fold models score their held-out fold; the test part gets the mean of the fold models' scores
    (a 5-model ensemble, each trained on 64% of the products, as the shipped model is)."""
    from db.session import make_engine

    frozen_scores(setup)
    settings = get_settings()
    trainer = Trainer(
        setup.catalogue,
        recorder=DatabaseRunRecorder(make_engine(settings.database_url), root=settings.data_dir),
        runs_dir=settings.runs_dir,
        cache_dir=settings.cache_dir,
        feature_progress=lambda stage, done, total: print(f"{stage}: {done}/{total}", flush=True),
    )
    shipped_recipe = with_overrides(DEFAULTS["text"], finetune_layers=6)
    scores, test_scores = trainer.fold_text_logits(shipped_recipe, fold_splits(setup), epochs=epochs, seed=0, also=setup.test)
    assert test_scores is not None
    scores[setup.test] = test_scores
    setup.scores["text model"] = scores
    truth = setup.y[setup.test]
    return [
        (
            "text model: validation out of fold, test by the mean of the fold models",
            validation_figure(setup, scores[setup.validation].argmax(1)) + figures(truth, test_scores.argmax(1)),
        ),
        ("stack: text model + tfidf + photos", stack_figures(setup, ("text model", "tfidf", "photos"))),
        ("stack: text model + tfidf + sentences + photos", stack_figures(setup, ("text model", "tfidf", "sentences", "photos"))),
        (
            "stack: text model + tfidf + photos, the shipped text model in place of the fold models at inference",
            stack_figures(setup, ("text model", "tfidf", "photos"), at_inference={"text model": shipped_text_scores(setup)}),
        ),
    ]


def shipped_text_scores(setup: Setup) -> np.ndarray:
    """The shipped text model's scores on the validation and test rows, the only ones it was not trained on
    (NaN elsewhere): its log-probabilities centred per row, which are its logits up to a shift per row."""
    from core.evaluation.catalogue import predict_catalogue
    from core.inference.category_classifier import CategoryClassifier

    settings = get_settings()
    classifier = CategoryClassifier(settings.models_dir)
    hyperparameters = classifier.models["text"].info.get("hyperparameters", {})
    if (hyperparameters.get("seed"), hyperparameters.get("test_fraction"), hyperparameters.get("val_fraction")) != (SPLIT_SEED, 0.2, 0.2):
        raise SystemExit(f"the text model under {settings.models_dir} was not trained on this split (seed {SPLIT_SEED}, 20% / 20%)")
    held_out = setup.catalogue.restricted_to([setup.catalogue.products[row].id for row in np.concatenate([setup.validation, setup.test])])
    text = predict_catalogue(classifier, held_out, cache_dir=settings.cache_dir)["text"]
    assert text.uncalibrated is not None  # predict_catalogue keeps the raw probabilities
    in_catalogue_order = [classifier.labels.index(label) for label in setup.catalogue.labels]
    log_probabilities = np.log(np.clip(text.uncalibrated[:, in_catalogue_order], 1e-12, None))
    scores = np.full((len(setup.y), setup.n_classes), np.nan)
    scores[[setup.row_of[product_id] for product_id in text.frame["product_id"]]] = log_probabilities - log_probabilities.mean(
        axis=1, keepdims=True
    )
    return scores


def run_image_end_to_end(setup: Setup, *, epochs: int, photo_share: float) -> list[tuple[str, str]]:
    """Per photo, as the image model is measured; on the training runs' split, the epoch chosen on its validation part."""
    backbone = get_backbone(DEFAULT_BACKBONE)
    catalogue = setup.catalogue
    product_rows = np.array([setup.row_of[image.product_id] for image in catalogue.images])
    y = torch.from_numpy(setup.y[product_rows])
    generator = np.random.default_rng(0)
    chosen = np.sort(generator.choice(len(catalogue.images), int(len(catalogue.images) * photo_share), replace=False))
    side = {
        **dict.fromkeys(setup.dev.tolist(), "train"),
        **dict.fromkeys(setup.validation.tolist(), "val"),
        **dict.fromkeys(setup.test.tolist(), "test"),
    }
    photo_side = np.array([side[row] for row in product_rows[chosen]])
    train, validation, test = (chosen[photo_side == name] for name in ("train", "val", "test"))
    transform = backbone.transforms()
    pixels = {int(index): transform(open_image(catalogue.images[index].path)).half() for index in chosen}
    # The whole feature extractor is the fine-tuned "tail"; a dropout + linear layer is the head.
    head = nn.Sequential(nn.Dropout(0.3), nn.Linear(backbone.feature_dim, setup.n_classes))
    model = FineTunedImageClassifier(backbone.load(), head).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        [{"params": model.tail.parameters(), "lr": 3e-4}, {"params": model.head.parameters(), "lr": 3e-3}], weight_decay=1e-4
    )
    steps = epochs * math.ceil(len(train) / 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[3e-4, 3e-3], total_steps=steps, pct_start=0.1)
    augment = augmentations.Compose(
        [augmentations.RandomResizedCrop(backbone.input_size, scale=(0.5, 1.0), antialias=True), augmentations.RandomHorizontalFlip()]
    )

    @torch.no_grad()
    def probabilities(rows: np.ndarray, *, flip: bool = False) -> np.ndarray:
        model.eval()
        parts = []
        for batch in np.array_split(rows, max(1, math.ceil(len(rows) / 64))):
            images = torch.stack([pixels[int(index)].float() for index in batch]).contiguous(memory_format=torch.channels_last)
            with autocast():
                result = torch.softmax(model(images).float(), -1)
                if flip:
                    result = (result + torch.softmax(model(images.flip(-1)).float(), -1)) / 2
            parts.append(result.numpy())
        return np.concatenate(parts)

    best_accuracy, best_state = -1.0, None
    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        for batch in np.array_split(generator.permutation(train), math.ceil(len(train) / 32)):
            images = torch.stack([augment(pixels[int(index)].float()) for index in batch]).contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = model(images).float()
            loss = nn.functional.cross_entropy(logits, y[batch], label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
        accuracy = float((probabilities(validation).argmax(1) == y[validation].numpy()).mean())
        print(f"image epoch {epoch + 1}/{epochs}: validation {accuracy:.3f}, {time.perf_counter() - started:.0f} s", flush=True)
        if accuracy > best_accuracy:
            best_accuracy, best_state = accuracy, {key: value.clone() for key, value in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    truth = y[test].numpy()
    return [
        ("image end to end, per photo", figures(truth, probabilities(test).argmax(1))),
        ("image end to end, flip test-time augmentation", figures(truth, probabilities(test, flip=True).argmax(1))),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality")
    parser.add_argument("--only", choices=EXPERIMENTS, nargs="*", help="run only these")
    parser.add_argument("--quick", action="store_true", help="2 folds, 1 epoch, a tenth of the photos: a smoke run")
    parser.add_argument("--save", metavar="FILE.npz", help="keep the scores, labels and split rows here")
    args = parser.parse_args()
    setup = load_setup(folds=2 if args.quick else 5)
    chosen = args.only or EXPERIMENTS
    rows: list[tuple[str, str]] = []
    if "stacking" in chosen:
        rows += run_stacking(setup)
    if "pruning" in chosen:
        rows += run_pruning(setup)
    if "text-folds" in chosen:
        rows += run_text_folds(setup, epochs=1 if args.quick else 4)
    if "image-end-to-end" in chosen:
        rows += run_image_end_to_end(setup, epochs=1 if args.quick else 6, photo_share=0.1 if args.quick else 1.0)
    print_table(rows)
    if args.save:
        np.savez_compressed(
            args.save,
            y=setup.y,
            dev=setup.dev,
            test=setup.test,
            validation=setup.validation,
            **{f"score_{name.replace(' ', '_')}": scores for name, scores in setup.scores.items()},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
