"""Builders the tests share: catalogue rows and folders, generated photos and catalogues with known
classes, pointing the app at a catalogue home."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import Engine, func, select

from core.settings import get_settings, home_environment
from db.importer import ImportReport

REQUIRE_DATA_FLAG = "MARKETPLACE_REQUIRE_DATA"
REQUIRE_POSTGRES_FLAG = "MARKETPLACE_REQUIRE_POSTGRES"
BACKENDS = ("sqlite", "postgresql")


def shared_data_dir() -> Path:
    return get_settings().marketplace_data


@dataclass
class ImportedCatalogue:
    engine: Engine
    database_url: str
    home: Path
    report: ImportReport


def as_without_pgvector(engine: Engine) -> None:
    """Make a PostgreSQL catalogue look like one on a server without the vector extension: its vectors as real[]."""
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE catalogue_vectors ALTER COLUMN embedding TYPE real[] USING embedding::real[]"))


def row_counts(engine: Engine) -> tuple[int, int, int]:
    """Products, photos and label-history rows in the catalogue."""
    from db.session import session_scope
    from db.tables import Image as ImageRow
    from db.tables import LabelHistory, Product

    with session_scope(engine) as session:
        return tuple(session.scalar(select(func.count()).select_from(table)) or 0 for table in (Product, ImageRow, LabelHistory))  # type: ignore[return-value]


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path, *, database_url: str | None = None, media_dir: Path | None = None) -> None:
    """Point the settings (app, CLI, child processes) at a catalogue home: its DB, photos and caches."""
    for name, value in home_environment(home, database_url=database_url, media_dir=media_dir).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MARKETPLACE_MODELS", raising=False)


def product_row(product_id: str, **overrides: str) -> dict[str, str]:
    row = {
        "id": product_id,
        "product_name": f"Item {product_id} | in Leeds, West Yorkshire | Gumtree",
        "category": "Home & Garden / Garden & Patio / Outdoor Settings & Furniture",
        "product_description": f"A fine item {product_id}.",
        "price": "£10.00",
        "location": "Leeds, West Yorkshire",
    }
    row.update(overrides)
    return row


def write_catalogue(
    folder: Path, products: list[dict[str, str]], images: list[dict[str, str]], *, photos: dict[str, Image.Image | bytes] | None = None
) -> Path:
    """A catalogue in the seed format: CSVs with the unnamed index column, and images/."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(products).to_csv(folder / "Products.csv", index=True, lineterminator="\n")
    pd.DataFrame(images, columns=["id", "product_id", "bucket_link", "image_ref", "create_time"]).fillna("").to_csv(
        folder / "Images.csv", index=True, lineterminator="\n"
    )
    (folder / "images").mkdir(exist_ok=True)
    for image_id, photo in (photos or {}).items():
        target = folder / "images" / f"{image_id}.jpg"
        if isinstance(photo, bytes):
            target.write_bytes(photo)
        else:
            photo.save(target, format="PNG" if photo.mode == "RGBA" else "JPEG")
    return folder


def image_row(image_id: str, product_id: str) -> dict[str, str]:
    return {
        "id": image_id,
        "product_id": product_id,
        "bucket_link": f"https://example.invalid/{image_id}.jpg",
        "image_ref": "ref",
        "create_time": "2022-02-26",
    }


def photo(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


CLASSES = {
    "Appliances": ("fridge freezer washing machine kettle", (230, 230, 240), "rectangle"),
    "Sports, Leisure & Travel": ("mountain bike football tennis racket", (30, 160, 40), "ellipse"),
    "Baby & Kids Stuff": ("pram pushchair cot toddler toys", (240, 120, 200), "triangle"),
}


def generated_photo(colour: tuple[int, int, int], shape: str, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (96, 96), tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour))
    draw = ImageDraw.Draw(image)
    box = (rng.randint(5, 25), rng.randint(5, 25), rng.randint(60, 90), rng.randint(60, 90))
    if shape == "rectangle":
        draw.rectangle(box, fill=(20, 20, 20))
    elif shape == "ellipse":
        draw.ellipse(box, fill=(250, 250, 250))
    else:
        draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=(40, 40, 200))
    return image


def generated_catalogue(folder: Path, *, per_class: int = 24, seed: int = 0) -> Path:
    rng = random.Random(seed)
    products, images, photos = [], [], {}
    for category, (words, colour, shape) in CLASSES.items():
        vocabulary = words.split()
        for index in range(per_class):
            product_id = f"{category[:4].lower().strip()}{index}"
            name = " ".join(rng.sample(vocabulary, 2))
            description = f"{rng.choice(vocabulary)} in good condition, collection only"
            products.append(
                product_row(
                    product_id,
                    product_name=f"{name} | in Leeds, West Yorkshire | Gumtree",
                    product_description=description,
                    category=f"{category} / Other",
                )
            )
            for photo_index in range(1 + index % 2):
                image_id = f"{product_id}img{photo_index}"
                images.append(image_row(image_id, product_id))
                photos[image_id] = generated_photo(colour, shape, rng)
    return write_catalogue(folder, products, images, photos=photos)
