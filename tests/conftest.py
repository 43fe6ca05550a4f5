"""Shared fixtures: the real data set (skipped, or failed under CI, when absent), generated
catalogues with known defects, and one full import of the shared data per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import Engine

from core.settings import get_settings
from db.importer import ImportReport, import_catalogue
from db.session import make_engine

REQUIRE_DATA_FLAG = "MARKETPLACE_REQUIRE_DATA"


def _marketplace_dir() -> Path:
    return get_settings().marketplace_data


@pytest.fixture(scope="session")
def marketplace_dir() -> Path:
    """The shared data set; a skip with the reason where it is absent, a failure when CI requires it."""
    path = _marketplace_dir()
    if not (path / "Products.csv").is_file():
        message = f"the marketplace data set is not at {path} (set MARKETPLACE_DATA)"
        if os.environ.get(REQUIRE_DATA_FLAG) == "1":
            pytest.fail(message + f"; {REQUIRE_DATA_FLAG}=1 requires it")
        pytest.skip(message)
    return path


@dataclass
class ImportedCatalogue:
    engine: Engine
    database_url: str
    home: Path
    report: ImportReport


@pytest.fixture(scope="session")
def shared_catalogue(marketplace_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ImportedCatalogue:
    """The full shared data set imported once per session into a temporary SQLite file."""
    home = tmp_path_factory.mktemp("shared_catalogue")
    url = f"sqlite:///{home / 'catalogue.db'}"
    engine = make_engine(url)
    report = import_catalogue(marketplace_dir, engine=engine, media_dir=home / "images")
    return ImportedCatalogue(engine, url, home, report)


@pytest.fixture
def app_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Point the settings (and so the app and CLI) at an empty home folder of this test's own."""
    monkeypatch.setenv("MARKETPLACE_HOME", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MARKETPLACE_MEDIA", raising=False)
    yield tmp_path


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
    folder: Path,
    products: list[dict[str, str]],
    images: list[dict[str, str]],
    *,
    photos: dict[str, Image.Image | bytes] | None = None,
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
    return {"id": image_id, "product_id": product_id, "bucket_link": f"https://example.invalid/{image_id}.jpg", "image_ref": "ref", "create_time": "2022-02-26"}


def photo(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


@pytest.fixture(scope="session")
def text_encoder():  # type: ignore[no-untyped-def]
    """The real MiniLM encoder from its wheel, loaded once per test session."""
    from core.features import load_text_encoder

    return load_text_encoder(128)
