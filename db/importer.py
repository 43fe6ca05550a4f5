"""Import a catalogue in the seed format (Products.csv, Images.csv, images/) into the DB.

Rows are checked one by one: a bad row is skipped with its reason and never aborts the import.
Photos are cleaned in a thread pool before the DB transaction; all DB writes happen in one
transaction, so a killed import leaves the catalogue as it was. Re-running changes nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from core.cleaning import (
    CATEGORY_SEPARATOR,
    clean_description,
    clean_product_name,
    parse_price,
    price_to_pence,
    split_category,
)
from core.dataset import Catalogue, ImageRecord, ProductRecord
from core.images import DEFAULT_CANVAS_SIZE, ImageError, open_image, read_photo_file, remove_partial_files, save_cleaned
from db.models import Category, Image, LabelHistory, Product
from db.session import session_scope

PRODUCT_COLUMNS = ("id", "product_name", "category", "product_description", "price", "location")
IMAGE_COLUMNS = ("id", "product_id")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_BAD_LINE = re.compile(r"Skipping line (\d+): (.*)")

Progress = Callable[[str, int, int], None]


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
            f"images: {self.images_imported} ({self.images_added} added, {self.images_updated} updated, "
            f"{self.images_unchanged} unchanged)",
            f"skipped rows: {len(self.skipped)}",
        ]
        lines += [f"  {count} x {reason}" for reason, count in self.skipped_by_reason().most_common()]
        lines += [f"note: {note}" for note in self.notes]
        lines.append(f"took {self.seconds:.1f} s")
        return "\n".join(lines)


@dataclass(frozen=True)
class _ProductRow:
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
class _ImageRow:
    line: int
    id: str
    product_id: str
    position: int
    original: Path
    source_ref: str


@dataclass(frozen=True)
class _CleanedImage:
    row: _ImageRow
    file_path: str
    width: int
    height: int
    checksum: str
    created: bool  # this import wrote the cleaned file where there was none: removed again if the import fails


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


def _product_row(record: dict[str, str], line: int, product_id: str) -> _ProductRow:
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
    return _ProductRow(line=line, id=product_id, raw_name=_checked("raw name", record["product_name"]), name=name,
                       category_path=category_path, raw_description=raw_description, description=clean_description(raw_description),
                       price_pence=price_pence, location=_checked("location", " ".join(record["location"].split())))


def _parse_products(frame: pd.DataFrame, report: ImportReport) -> dict[str, _ProductRow]:
    rows: dict[str, _ProductRow] = {}
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


def _parse_images(
    frame: pd.DataFrame, images_dir: Path, known_products: set[str], report: ImportReport
) -> list[_ImageRow]:
    rows: list[_ImageRow] = []
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
            _ImageRow(
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


def media_path_for(image_id: str) -> str:
    """Where the cleaned copy lives, relative to the media folder (two-level fan-out)."""
    return f"{image_id[:2]}/{image_id}.jpg"


def _clean_one(row: _ImageRow, media_dir: Path, size: int, known_checksums: dict[str, str]) -> _CleanedImage:
    data = read_photo_file(row.original, label=row.original.name)  # checked before reading: a regular file, not huge
    checksum = hashlib.sha256(data).hexdigest()
    relative = media_path_for(row.id)
    target = media_dir / relative
    image = open_image(data, name=row.original.name)
    written = known_checksums.get(row.id) != checksum or not target.is_file()
    created = written and not target.exists()
    if written:
        save_cleaned(image, target, size=size)
    return _CleanedImage(row, relative, image.width, image.height, checksum, created)


def _clean_images(
    rows: list[_ImageRow],
    media_dir: Path,
    size: int,
    known_checksums: dict[str, str],
    report: ImportReport,
    progress: Progress | None,
    workers: int,
) -> list[_CleanedImage]:
    cleaned: list[_CleanedImage] = []

    def attempt(row: _ImageRow) -> _CleanedImage | SkippedRow:
        try:
            return _clean_one(row, media_dir, size, known_checksums)
        except ImageError as error:
            return SkippedRow("Images.csv", row.line, row.id, f"image unreadable: {error}")
        except Exception as error:  # noqa: BLE001 - one photo's failure, whatever it is, is that photo's skipped row
            return SkippedRow("Images.csv", row.line, row.id, f"image unreadable: {row.original.name}: {type(error).__name__}: {error}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, outcome in enumerate(pool.map(attempt, rows), start=1):
            if isinstance(outcome, SkippedRow):
                report.skipped.append(outcome)
            else:
                cleaned.append(outcome)
            if progress and (done % 200 == 0 or done == len(rows)):
                progress("images", done, len(rows))
    return cleaned


def _get_or_create_category(session, path: str, cache: dict[str, Category]) -> Category:  # type: ignore[no-untyped-def]
    """The category node of `path`, creating it and any missing ancestors (a loop: paths are
    bounded in depth, but no path's depth should reach the recursion limit either)."""
    parts = path.split(CATEGORY_SEPARATOR)
    parent: Category | None = None
    for depth in range(len(parts)):
        prefix = CATEGORY_SEPARATOR.join(parts[: depth + 1])
        category = cache.get(prefix)
        if category is None:
            category = cache[prefix] = Category(path=prefix, name=parts[depth], depth=depth, parent=parent)
            session.add(category)
        parent = category
    assert parent is not None
    return parent


class CatalogueWriteError(RuntimeError):
    """The database refused the import's writes; nothing was imported (the message says why)."""


@contextmanager
def _import_lock(media_dir: Path) -> Iterator[None]:
    """One import at a time per catalogue (its photo folder): a second one waits for the first,
    then finds its rows there, instead of racing it to the same inserts."""
    media_dir.mkdir(parents=True, exist_ok=True)
    with open(media_dir / ".import.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def import_catalogue(
    source_dir: str | Path,
    *,
    engine: Engine,
    media_dir: str | Path,
    image_size: int = DEFAULT_CANVAS_SIZE,
    progress: Progress | None = None,
    workers: int = 4,
    imported_by: str = "import",
) -> ImportReport:
    """Import or refresh the catalogue from `source_dir`; returns what was done and skipped.

    Raises CatalogueFormatError for a folder that is not a catalogue, CatalogueWriteError when the
    database refuses the writes (then the photo files this import created are removed again)."""
    started = time.perf_counter()
    source = Path(source_dir)
    media = Path(media_dir)
    if not source.is_dir():
        raise CatalogueFormatError(f"{source} is not a folder")
    with _import_lock(media):
        report = ImportReport()
        if removed := remove_partial_files(media):
            report.notes.append(f"removed {removed} partly written photo files left by an interrupted import")
        products = _parse_products(read_csv_rows(source / "Products.csv", PRODUCT_COLUMNS, report), report)
        if progress:
            progress("products", len(products), len(products))
        with session_scope(engine) as session:
            existing_ids = set(session.scalars(select(Product.id)))
            known_checksums = {image_id: checksum for image_id, checksum in session.execute(select(Image.id, Image.checksum))}
        images_dir = source / "images"
        if images_dir.is_dir():
            image_rows = _parse_images(read_csv_rows(source / "Images.csv", IMAGE_COLUMNS, report), images_dir,
                                       set(products) | existing_ids, report)
        else:
            image_rows = []
            report.notes.append(f"no images/ folder in {source}: products imported without photos")
        cleaned = _clean_images(image_rows, media, image_size, known_checksums, report, progress, workers)
        try:
            with session_scope(engine) as session:
                _write_products(session, products, report, source_name=source.name, imported_by=imported_by)
                _write_images(session, cleaned, report)
        except (SQLAlchemyError, OSError) as error:
            for item in cleaned:
                if item.created:
                    (media / item.file_path).unlink(missing_ok=True)
            reason = error.orig if isinstance(error, DBAPIError) else error
            raise CatalogueWriteError(f"the catalogue could not be written ({reason}); nothing was imported") from error
    report.seconds = time.perf_counter() - started
    return report


def _write_products(session: Session, products: dict[str, _ProductRow], report: ImportReport, *, source_name: str, imported_by: str) -> None:
    categories = {category.path: category for category in session.scalars(select(Category))}
    stored = {product.id: product for product in session.scalars(select(Product))}
    for row in products.values():
        category = _get_or_create_category(session, row.category_path, categories)
        values = {"name": row.name, "raw_name": row.raw_name, "description": row.description, "raw_description": row.raw_description,
                  "price_pence": row.price_pence, "location": row.location}
        product = stored.get(row.id)
        if product is None:
            session.add(Product(id=row.id, category=category, source="import", **values))
            report.products_added += 1
            continue
        changed = {key: value for key, value in values.items() if getattr(product, key) != value}
        if product.category_id != category.id:
            session.flush()  # a new category needs its id for the history row
            session.add(LabelHistory(product_id=product.id, old_category_id=product.category_id, new_category_id=category.id,
                                     changed_by=imported_by, reason=f"re-import from {source_name}", source="import"))
            product.category = category
            product.label_version += 1
            changed["category"] = category
        for key, value in changed.items():
            setattr(product, key, value)
        if changed:
            report.products_updated += 1
        else:
            report.products_unchanged += 1
    session.flush()


def _write_images(session: Session, cleaned: list[_CleanedImage], report: ImportReport) -> None:
    stored_images = {image.id: image for image in session.scalars(select(Image))}
    for item in cleaned:
        values = {"product_id": item.row.product_id, "position": item.row.position, "file_path": item.file_path,
                  "original_path": str(item.row.original.resolve()), "width": item.width, "height": item.height,
                  "checksum": item.checksum, "source_ref": item.row.source_ref}
        image = stored_images.get(item.row.id)
        if image is None:
            session.add(Image(id=item.row.id, **values))
            report.images_added += 1
        elif any(getattr(image, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(image, key, value)
            report.images_updated += 1
        else:
            report.images_unchanged += 1


def read_catalogue_folder(source_dir: str | Path) -> tuple[Catalogue, ImportReport]:
    """A seed-format folder as model records, without touching any database (photos read in place).

    Rows are checked exactly as an import checks them; photos are opened later, by the models.
    """
    source = Path(source_dir)
    if not source.is_dir():
        raise CatalogueFormatError(f"{source} is not a folder")
    report = ImportReport()
    products = _parse_products(read_csv_rows(source / "Products.csv", PRODUCT_COLUMNS, report), report)
    image_rows: list[_ImageRow] = []
    if (source / "images").is_dir():
        image_rows = _parse_images(read_csv_rows(source / "Images.csv", IMAGE_COLUMNS, report), source / "images", set(products), report)
    records = [ProductRecord.of(row.id, row.name, row.description, row.category_path) for row in products.values()]
    images = [ImageRecord(row.id, row.product_id, row.original, "") for row in image_rows]
    return Catalogue(records, images), report
