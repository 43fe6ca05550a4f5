"""Train / validation / held-out test split by product, stratified by category, seeded; and the
one cross-fitting helper every out-of-fold routine uses.

A product's photos always fall on its side, so nothing leaks. The test part is held out from
training and from model selection (best epoch, hyper-parameters); validation picks the epoch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from core.runtime.progress import Progress

TRAIN, VALIDATION, TEST = "train", "val", "test"


def split_products(
    product_ids: Sequence[str], labels: Sequence[str], *, test_fraction: float = 0.2, val_fraction: float = 0.2, seed: int = 42
) -> dict[str, str]:
    """product id -> 'train' | 'val' | 'test'. `val_fraction` is a fraction of what is left after test.

    Stratified where every class has enough members; classes too small to stratify go unstratified.
    """
    if len(product_ids) != len(labels):
        raise ValueError("product_ids and labels differ in length")
    from sklearn.model_selection import train_test_split  # a second to import: pages that only read TEST need none

    if len(set(product_ids)) != len(product_ids):
        raise ValueError("product ids must be unique: split products, not photos")
    ids, ys = list(product_ids), list(labels)
    assignment: dict[str, str] = {}
    if test_fraction > 0:
        ids, test_ids, ys, _ = train_test_split(ids, ys, test_size=test_fraction, random_state=seed, stratify=_stratify(ys, test_fraction))
        assignment.update(dict.fromkeys(test_ids, TEST))
    if val_fraction > 0:
        ids, val_ids, ys, _ = train_test_split(ids, ys, test_size=val_fraction, random_state=seed + 1, stratify=_stratify(ys, val_fraction))
        assignment.update(dict.fromkeys(val_ids, VALIDATION))
    assignment.update(dict.fromkeys(ids, TRAIN))
    return assignment


def _stratify(labels: list[str], fraction: float) -> list[str] | None:
    counts = Counter(labels)
    smallest_side = min(min(counts.values()) * fraction, min(counts.values()) * (1 - fraction))
    return labels if len(counts) > 1 and smallest_side >= 1 else None


Folds = list[tuple[np.ndarray, np.ndarray]]  # (fit rows, score rows) per fold


def stratified_folds(labels: Sequence[int] | np.ndarray, *, folds: int = 5, seed: int = 42, rows: np.ndarray | None = None) -> Folds:
    """(fit rows, score rows) per fold over `rows` (default: every row of `labels`), stratified by label and
    shuffled with `seed`. Fewer folds when the smallest class present has fewer members than `folds`, never under 2."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels, dtype=int)
    rows = np.arange(len(y)) if rows is None else np.asarray(rows)
    counts = np.bincount(y[rows])
    splitter = StratifiedKFold(max(2, min(folds, int(counts[counts > 0].min()))), shuffle=True, random_state=seed)
    return [(rows[fit_index], rows[score_index]) for fit_index, score_index in splitter.split(rows, y[rows])]


FoldFitter = Callable[[int, np.ndarray, np.ndarray], np.ndarray]  # (fold number from 0, fit rows, score rows) -> outputs


def cross_fit(fit_and_score: FoldFitter, folds: Folds, *, n_rows: int, width: int, progress: Progress | None = None) -> np.ndarray:
    """(n_rows, width) out-of-fold outputs: per fold, `fit_and_score(fold, fit rows, score rows)` fits on the fit rows
    and returns the score rows' outputs, so no row is scored by a model that saw it. Rows in no fold stay zero."""
    outputs = np.zeros((n_rows, width), np.float32)
    for fold, (fit_rows, score_rows) in enumerate(folds):
        outputs[score_rows] = fit_and_score(fold, fit_rows, score_rows)
        if progress:
            progress(fold + 1, len(folds))
    return outputs
