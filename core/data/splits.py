"""Train / validation / held-out test split by product, stratified by category, seeded.

A product's photos always fall on its side, so nothing leaks. The test part is held out from
training and from model selection (best epoch, hyper-parameters); validation picks the epoch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

TRAIN, VALIDATION, TEST = "train", "val", "test"


def split_products(
    product_ids: Sequence[str],
    labels: Sequence[str],
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    seed: int = 42,
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
