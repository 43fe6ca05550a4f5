"""Builders for the API tests: a small generated catalogue and photo uploads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.settings import PROJECT_ROOT, Settings, get_settings
from tests.helpers import image_row, photo, product_row, write_catalogue

SMALL_PRODUCTS = {
    "bench": ("Garden bench", "Home & Garden / Garden & Patio / Outdoor Settings & Furniture", (40, 120, 40)),
    "phone": ("iPhone 12 pro 128gb", "Phones, Mobile Phones & Telecoms / Mobile Phones", (20, 20, 20)),
    "pram": ("Silver Cross pram", "Baby & Kids Stuff / Prams, Strollers & Pushchairs", (200, 120, 180)),
}


def small_catalogue(folder: Path) -> Path:
    """Three products in three categories, one photo each."""
    products = [
        product_row(product_id, product_name=f"{name} | in Leeds, West Yorkshire | Gumtree", category=category)
        for product_id, (name, category, _) in SMALL_PRODUCTS.items()
    ]
    images = [image_row(f"{product_id}-photo", product_id) for product_id in SMALL_PRODUCTS]
    photos = {f"{product_id}-photo": photo(colour) for product_id, (_, _, colour) in SMALL_PRODUCTS.items()}
    return write_catalogue(folder, products, images, photos=photos)


def upload(name: str, data: bytes, *, field: str = "photos") -> tuple[str, tuple[str, bytes, str]]:
    return (field, (name, data, "application/octet-stream"))


def settings_for(home: Path, database_url: str, **overrides: object) -> Settings:
    """The settings of a catalogue home (its database, photos and caches) with the shipped models."""
    return replace(
        get_settings(), database_url=database_url, data_dir=home, media_dir=home / "images", models_dir=PROJECT_ROOT / "models", **overrides
    )
