"""Import a catalogue in the seed format (Products.csv, Images.csv, images/) into the DB.

Rows are read and checked by core.data.catalogue_folder: a bad row is skipped with its reason and
never aborts the import.
Photos are cleaned in a thread pool before the DB transaction; all DB writes happen in one
transaction, so a killed import leaves the catalogue as it was. Re-running changes nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from core.data.catalogue_folder import (
    IMAGE_COLUMNS,
    PRODUCT_COLUMNS,
    CatalogueFormatError,
    ImageRow,
    ImportReport,
    ProductRow,
    SkippedRow,
    parse_images,
    parse_products,
    read_csv_rows,
)
from core.data.cleaning import CATEGORY_SEPARATOR
from core.data.images import (
    DEFAULT_CANVAS_SIZE,
    ImageError,
    media_path_for,
    open_image,
    read_photo_file,
    remove_partial_files,
    save_cleaned,
)
from core.runtime.progress import StageProgress
from db.session import after_bulk_write, session_scope
from db.tables import Category, Image, LabelHistory, Product


@dataclass(frozen=True)
class _CleanedImage:
    row: ImageRow
    file_path: str
    width: int
    height: int
    checksum: str
    created: bool  # this import wrote the cleaned file where there was none: removed again if the import fails


def _clean_one(row: ImageRow, media_dir: Path, size: int, known_checksums: dict[str, str]) -> _CleanedImage:
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
    rows: list[ImageRow],
    media_dir: Path,
    size: int,
    known_checksums: dict[str, str],
    report: ImportReport,
    progress: StageProgress | None,
    workers: int,
) -> list[_CleanedImage]:
    cleaned: list[_CleanedImage] = []

    def attempt(row: ImageRow) -> _CleanedImage | SkippedRow:
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


def _get_or_create_category(session: Session, path: str, cache: dict[str, Category]) -> Category:
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
    progress: StageProgress | None = None,
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
        products = parse_products(read_csv_rows(source / "Products.csv", PRODUCT_COLUMNS, report), report)
        if progress:
            progress("products", len(products), len(products))
        with session_scope(engine) as session:
            existing_ids = set(session.scalars(select(Product.id)))
            known_checksums = {image_id: checksum for image_id, checksum in session.execute(select(Image.id, Image.checksum))}
        images_dir = source / "images"
        if images_dir.is_dir():
            image_rows = parse_images(
                read_csv_rows(source / "Images.csv", IMAGE_COLUMNS, report), images_dir, set(products) | existing_ids, report
            )
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
        after_bulk_write(engine, ("categories", "products", "images", "label_history"))
    report.seconds = time.perf_counter() - started
    return report


def _write_products(session: Session, products: dict[str, ProductRow], report: ImportReport, *, source_name: str, imported_by: str) -> None:
    categories = {category.path: category for category in session.scalars(select(Category))}
    stored = {product.id: product for product in session.scalars(select(Product))}
    for row in products.values():
        category = _get_or_create_category(session, row.category_path, categories)
        values = {
            "name": row.name,
            "raw_name": row.raw_name,
            "description": row.description,
            "raw_description": row.raw_description,
            "price_pence": row.price_pence,
            "location": row.location,
        }
        product = stored.get(row.id)
        if product is None:
            session.add(Product(id=row.id, category=category, source="import", **values))
            report.products_added += 1
            continue
        changed = {key: value for key, value in values.items() if getattr(product, key) != value}
        if product.category_id != category.id:
            session.flush()  # a new category needs its id for the history row
            session.add(
                LabelHistory(
                    product_id=product.id,
                    old_category_id=product.category_id,
                    new_category_id=category.id,
                    changed_by=imported_by,
                    reason=f"re-import from {source_name}",
                    source="import",
                )
            )
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
        values = {
            "product_id": item.row.product_id,
            "position": item.row.position,
            "file_path": item.file_path,
            "original_path": str(item.row.original.resolve()),
            "width": item.width,
            "height": item.height,
            "checksum": item.checksum,
            "source_ref": item.row.source_ref,
        }
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
