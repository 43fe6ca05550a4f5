"""Reading a catalogue folder in the seed format (Products.csv, Images.csv, images/) without any
database: every row checked one by one (a bad row is skipped with its reason, never aborting the
rest), names, categories, prices and descriptions cleaned, photos found on disk."""

from __future__ import annotations

import io
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.data.catalogue import Catalogue, ImageRecord, ProductRecord
from core.data.cleaning import CATEGORY_SEPARATOR, clean_description, clean_product_name, parse_price, price_to_pence, split_category

PRODUCT_COLUMNS = ("id", "product_name", "category", "product_description", "price", "location")

IMAGE_COLUMNS = ("id", "product_id")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

_BAD_LINE = re.compile(r"Skipping line (\d+): (.*)")


class CatalogueFormatError(ValueError):
    """The folder or one of its files is not a catalogue in the seed format."""


@dataclass(frozen=True)
class SkippedRow:
    file: str
    line: int | None  # line in the file (1 = header), when known
    row_id: str
    reason: str


@dataclass
class ImportReport:
    products_added: int = 0
    products_updated: int = 0
    products_unchanged: int = 0
    images_added: int = 0
    images_updated: int = 0
    images_unchanged: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def products_imported(self) -> int:
        return self.products_added + self.products_updated + self.products_unchanged

    @property
    def images_imported(self) -> int:
        return self.images_added + self.images_updated + self.images_unchanged

    def skipped_by_reason(self) -> Counter[str]:
        return Counter(row.reason.split(":")[0] for row in self.skipped)

    def summary(self) -> str:
        lines = [
            f"products: {self.products_imported} in the catalogue from this folder "
            f"({self.products_added} added, {self.products_updated} updated, {self.products_unchanged} unchanged)",
            f"images: {self.images_imported} ({self.images_added} added, {self.images_updated} updated, {self.images_unchanged} unchanged)",
            f"skipped rows: {len(self.skipped)}",
        ]
        lines += [f"  {count} x {reason}" for reason, count in self.skipped_by_reason().most_common()]
        lines += [f"note: {note}" for note in self.notes]
        lines.append(f"took {self.seconds:.1f} s")
        return "\n".join(lines)


@dataclass(frozen=True)
class ProductRow:
    line: int
    id: str
    raw_name: str
    name: str
    category_path: str
    raw_description: str
    description: str
    price_pence: int
    location: str


@dataclass(frozen=True)
class ImageRow:
    line: int
    id: str
    product_id: str
    position: int
    original: Path
    source_ref: str


def read_csv_rows(path: Path, required: tuple[str, ...], report: ImportReport) -> pd.DataFrame:
    """Read a seed-format CSV as strings; malformed lines become skipped rows, not errors."""
    if not path.is_file():
        raise CatalogueFormatError(f"{path.name} is missing from {path.parent}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        report.notes.append(f"{path.name} is not UTF-8; read it as Windows-1252")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = pd.read_csv(
                io.StringIO(text),
                lineterminator="\n",  # descriptions hold bare carriage returns
                dtype=str,
                keep_default_na=False,
                on_bad_lines="warn",
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise CatalogueFormatError(f"{path.name} is not a readable CSV file: {error}") from error
    for warning in caught:
        for line, reason in _BAD_LINE.findall(str(warning.message)):
            report.skipped.append(SkippedRow(path.name, int(line), "", f"malformed row: {reason.strip()}"))
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise CatalogueFormatError(f"{path.name} lacks the column(s): {', '.join(missing)}")
    frame["_line"] = range(2, len(frame) + 2)
    return frame


# The same limits on every database (PostgreSQL enforces the column sizes that SQLite ignores).
FIELD_LIMITS = {"name": 500, "raw name": 1_000, "location": 200, "description": 100_000}

MAX_CATEGORY_DEPTH = 8

MAX_CATEGORY_LEVEL = 200  # characters in one level's name

MAX_CATEGORY_PATH = 500


class RowError(ValueError):
    """Why one row is skipped (the message is the report's reason)."""


def _checked(field: str, value: str) -> str:
    if "\x00" in value:
        raise RowError(f"{field} holds a NUL character")
    if len(value) > FIELD_LIMITS[field]:
        raise RowError(f"{field} too long: {len(value):,} characters, the limit is {FIELD_LIMITS[field]:,}")
    return value


def _category_path(raw: str) -> str:
    parts = split_category(raw)
    if not parts:
        raise RowError("missing category")
    if len(parts) > MAX_CATEGORY_DEPTH:
        raise RowError(f"category too deep: {len(parts):,} levels, the limit is {MAX_CATEGORY_DEPTH}")
    longest = max(parts, key=len)
    if len(longest) > MAX_CATEGORY_LEVEL:
        raise RowError(f"category level too long: {len(longest):,} characters, the limit is {MAX_CATEGORY_LEVEL}")
    if any("\x00" in part for part in parts):
        raise RowError("category holds a NUL character")
    path = CATEGORY_SEPARATOR.join(parts)
    if len(path) > MAX_CATEGORY_PATH:
        raise RowError(f"category too long: {len(path):,} characters, the limit is {MAX_CATEGORY_PATH}")
    return path


def _product_row(record: dict[str, str], line: int, product_id: str) -> ProductRow:
    name = clean_product_name(record["product_name"])
    if not name:
        raise RowError("missing name")
    _checked("name", name)
    category_path = _category_path(record["category"])
    try:
        price_pence = price_to_pence(parse_price(record["price"]))
    except ValueError as error:
        raise RowError(f"bad price: {error}") from error
    raw_description = _checked("description", record["product_description"])
    return ProductRow(
        line=line,
        id=product_id,
        raw_name=_checked("raw name", record["product_name"]),
        name=name,
        category_path=category_path,
        raw_description=raw_description,
        description=clean_description(raw_description),
        price_pence=price_pence,
        location=_checked("location", " ".join(record["location"].split())),
    )


def parse_products(frame: pd.DataFrame, report: ImportReport) -> dict[str, ProductRow]:
    rows: dict[str, ProductRow] = {}
    for record in frame.to_dict("records"):
        line, product_id = int(record["_line"]), record["id"].strip()

        def skip(reason: str) -> None:
            report.skipped.append(SkippedRow("Products.csv", line, product_id, reason))

        if not _SAFE_ID.match(product_id):
            skip("bad id: empty or with characters other than letters, digits, - and _")
            continue
        if product_id in rows:
            skip("duplicate id: the first row with this id was kept")
            continue
        try:
            rows[product_id] = _product_row(record, line, product_id)
        except RowError as error:
            skip(str(error))
        except Exception as error:  # noqa: BLE001 - whatever one row provokes, it is that row's skip, never the import's end
            skip(f"unreadable row: {type(error).__name__}: {error}")
    return rows


def _find_image_file(images_dir: Path, image_id: str) -> Path | None:
    for extension in IMAGE_EXTENSIONS:
        candidate = images_dir / f"{image_id}{extension}"
        # The id is already restricted to a safe alphabet; this also refuses links out of the folder.
        if candidate.is_file() and candidate.resolve().parent == images_dir.resolve():
            return candidate
    return None


def parse_images(frame: pd.DataFrame, images_dir: Path, known_products: set[str], report: ImportReport) -> list[ImageRow]:
    rows: list[ImageRow] = []
    seen: set[str] = set()
    positions: Counter[str] = Counter()
    for record in frame.to_dict("records"):
        line, image_id = int(record["_line"]), record["id"].strip()
        product_id = record["product_id"].strip()

        def skip(reason: str) -> None:
            report.skipped.append(SkippedRow("Images.csv", line, image_id, reason))

        if not _SAFE_ID.match(image_id):
            skip("bad image id: empty, or with path separators or other characters")
            continue
        if image_id in seen:
            skip("duplicate image id: the first row with this id was kept")
            continue
        if product_id not in known_products:
            skip(f"unknown product: {product_id[:80]!r} is not an imported product")
            continue
        try:
            original = _find_image_file(images_dir, image_id)
        except OSError as error:  # e.g. a link loop where the photo should be
            skip(f"image file unreadable: {error.strerror or error}")
            continue
        if original is None:
            skip(f"image file missing: no {image_id}.jpg in {images_dir.name}/")
            continue
        seen.add(image_id)
        rows.append(
            ImageRow(
                line=line,
                id=image_id,
                product_id=product_id,
                position=positions[product_id],
                original=original,
                source_ref=(record.get("bucket_link") or record.get("image_ref") or "").replace("\x00", "")[:1000],
            )
        )
        positions[product_id] += 1
    return rows


def read_catalogue_folder(source_dir: str | Path) -> tuple[Catalogue, ImportReport]:
    """A seed-format folder as model records, without touching any database (photos read in place).

    Rows are checked exactly as an import checks them; photos are opened later, by the models.
    """
    source = Path(source_dir)
    if not source.is_dir():
        raise CatalogueFormatError(f"{source} is not a folder")
    report = ImportReport()
    products = parse_products(read_csv_rows(source / "Products.csv", PRODUCT_COLUMNS, report), report)
    image_rows: list[ImageRow] = []
    if (source / "images").is_dir():
        image_rows = parse_images(read_csv_rows(source / "Images.csv", IMAGE_COLUMNS, report), source / "images", set(products), report)
    records = [ProductRecord.of(row.id, row.name, row.description, row.category_path) for row in products.values()]
    images = [ImageRecord(row.id, row.product_id, row.original, "") for row in image_rows]
    return Catalogue(records, images), report
