"""What the models train and evaluate on: products (model text + top-level label) and their photos."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.cleaning import model_text, top_level_category


@dataclass(frozen=True)
class ProductRecord:
    id: str
    text: str  # cleaned, normalised name + description (never the raw boilerplate)
    label: str  # top-level category
    category: str  # full path

    @classmethod
    def of(cls, product_id: str, name: str, description: str, category: str) -> ProductRecord:
        return cls(product_id, model_text(name, description), top_level_category(category), category)


@dataclass(frozen=True)
class ImageRecord:
    id: str
    product_id: str
    path: Path
    checksum: str


@dataclass
class Catalogue:
    products: list[ProductRecord]
    images: list[ImageRecord]
    _images_of: dict[str, list[int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        grouped: dict[str, list[int]] = defaultdict(list)
        for row, image in enumerate(self.images):
            grouped[image.product_id].append(row)
        self._images_of = dict(grouped)

    @property
    def labels(self) -> list[str]:
        return sorted({product.label for product in self.products})

    def image_rows_of(self, product_id: str) -> list[int]:
        return self._images_of.get(product_id, [])

    def restricted_to(self, product_ids: Collection[str]) -> Catalogue:
        """The products with these ids and their photos, in catalogue order."""
        chosen = set(product_ids)
        return Catalogue(
            [product for product in self.products if product.id in chosen], [image for image in self.images if image.product_id in chosen]
        )

    def photo_means(self, photo_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per product, in product order: the mean of its photos' rows of `photo_features` (one row per
        image, in image order), zeros without a photo; and whether it has one."""
        means = np.zeros((len(self.products), photo_features.shape[1]), np.float32)
        has_photo = np.zeros(len(self.products), bool)
        for row, product in enumerate(self.products):
            photo_rows = self.image_rows_of(product.id)
            if photo_rows:
                means[row], has_photo[row] = photo_features[photo_rows].mean(axis=0), True
        return means, has_photo

    def fingerprint(self) -> str:
        """Changes whenever a product's text or label, or a photo, changes."""
        digest = hashlib.sha256()
        for product in sorted(self.products, key=lambda item: item.id):
            digest.update(f"{product.id}\t{product.label}\t{product.text}\n".encode())
        for image in sorted(self.images, key=lambda item: item.id):
            digest.update(f"{image.id}\t{image.product_id}\t{image.checksum}\n".encode())
        return digest.hexdigest()
