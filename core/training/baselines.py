"""The seed's reference models, kept as measured baselines (and the price predictor, which serves
suggested prices): TF-IDF + linear model for the category, KNN on image features, a small CNN
trained from scratch on small photos, and TF-IDF + linear regression for the price."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline, make_union
from sklearn.svm import LinearSVC
from torch import nn

from core.data.catalogue import Catalogue
from core.data.images import open_image
from core.data.splits import TEST
from core.inference.pricing import log_price, price_pipeline
from core.training.loop import train_step


def tfidf_category_model(*, c: float = 0.5) -> Pipeline:
    """Word 1-2-grams and character 2-5-grams, sublinear TF-IDF, linear SVM."""
    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
    )
    return make_pipeline(features, LinearSVC(C=c))


def knn_image_model(*, neighbours: int = 15) -> KNeighborsClassifier:
    """Cosine KNN over pooled backbone features, neighbours weighted by distance."""
    return KNeighborsClassifier(n_neighbors=neighbours, metric="cosine", weights="distance")


class ScratchCNN(nn.Module):
    """The seed's first model: a few Conv2d + ReLU layers with dropout, no pretraining."""

    def __init__(self, n_classes: int, *, size: int = 64, dropout: float = 0.3) -> None:
        super().__init__()
        channels = [3, 16, 32, 64]
        layers: list[nn.Module] = []
        for in_channels, out_channels in zip(channels, channels[1:]):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels[-1] * (size // 8) ** 2, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).flatten(1))


def small_images(paths: Sequence[Path], *, size: int = 64) -> torch.Tensor:
    """Photos as (N, 3, size, size) tensors in [0, 1] (the seed trained on small images)."""
    arrays = [np.asarray(open_image(path).resize((size, size)), dtype=np.float32) / 255 for path in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def train_scratch_cnn(
    images: torch.Tensor, labels: torch.Tensor, n_classes: int, *, epochs: int = 10, lr: float = 0.1, batch_size: int = 64, seed: int = 0
) -> ScratchCNN:
    """SGD with the seed's learning rate of 0.1."""
    torch.manual_seed(seed)
    model = ScratchCNN(n_classes, size=images.shape[-1])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(images), generator=generator).split(batch_size):
            train_step(model, optimizer, (images[batch],), labels[batch])
    return model.eval()


def price_model() -> GridSearchCV:
    """The price pipeline (core.inference.pricing) with its regression and name n-grams tuned by GridSearchCV."""
    grid = {
        "regression": [LinearRegression(), Ridge(alpha=1.0), Ridge(alpha=3.0), Ridge(alpha=10.0)],
        "features__name__ngram_range": [(1, 1), (1, 2)],
    }
    return GridSearchCV(price_pipeline(), grid, cv=3, scoring="neg_mean_absolute_error", n_jobs=1)


def run_baselines(
    catalogue: Catalogue,
    split: dict[str, str],
    image_features: np.ndarray,
    *,
    prices: dict[str, float],
    names: dict[str, str],
    descriptions: dict[str, str],
    locations: dict[str, str],
    scratch_epochs: int = 10,
) -> dict[str, dict]:
    """Each baseline trained on the non-test products and measured on the held-out test products."""
    labels = catalogue.labels
    index = {label: position for position, label in enumerate(labels)}
    products = catalogue.products
    product_test = np.array([split[product.id] == TEST for product in products])
    product_y = np.array([index[product.label] for product in products])
    texts = np.array([product.text for product in products])
    results: dict[str, dict] = {}

    started = time.perf_counter()
    text_model = tfidf_category_model().fit(texts[~product_test], product_y[~product_test])
    predicted = text_model.predict(texts[product_test])
    results["tfidf_linear_text"] = _scores(product_y[product_test], predicted, started)

    label_of = {product.id: index[product.label] for product in products}
    image_test = np.array([split[image.product_id] == TEST for image in catalogue.images])
    image_y = np.array([label_of[image.product_id] for image in catalogue.images])
    started = time.perf_counter()
    knn = knn_image_model().fit(image_features[~image_test], image_y[~image_test])
    predicted = knn.predict(image_features[image_test])
    results["knn_image_features"] = _scores(image_y[image_test], predicted, started)

    started = time.perf_counter()
    pixels = small_images([image.path for image in catalogue.images])
    targets = torch.from_numpy(image_y)
    scratch = train_scratch_cnn(pixels[~image_test], targets[~image_test], len(labels), epochs=scratch_epochs)
    with torch.no_grad():
        predicted = torch.cat([scratch(chunk).argmax(-1) for chunk in pixels[image_test].split(256)]).numpy()
    results["scratch_cnn_64px"] = _scores(image_y[image_test], predicted, started)

    columns = {"name": names, "description": descriptions, "location": locations}
    frame = pd.DataFrame({column: [values[product.id] for product in products] for column, values in columns.items()})
    price = np.array([prices[product.id] for product in products])
    results["price_tfidf_linear"] = _price_baseline(frame, price, product_y, product_test)
    return results


def _price_baseline(frame: pd.DataFrame, price: np.ndarray, product_y: np.ndarray, test: np.ndarray) -> dict[str, object]:
    """The price model against the naive guess (the category's median price), by median absolute error."""
    started = time.perf_counter()
    search = price_model().fit(frame[~test], log_price(price[~test]))
    predicted_price = np.expm1(search.predict(frame[test]))
    median_by_category = pd.Series(price[~test]).groupby(product_y[~test]).median()
    naive = median_by_category.reindex(product_y[test]).fillna(float(np.median(price[~test]))).to_numpy()
    return {
        "median_absolute_error": float(np.median(np.abs(predicted_price - price[test]))),
        "median_absolute_error_category_median": float(np.median(np.abs(naive - price[test]))),
        "best_params": {key: str(value) for key, value in search.best_params_.items()},
        "n": int(test.sum()),
        "seconds": time.perf_counter() - started,
    }


def _scores(truth: np.ndarray, predicted: np.ndarray, started: float) -> dict[str, float | int]:
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
        "n": int(len(truth)),
        "seconds": time.perf_counter() - started,
    }
