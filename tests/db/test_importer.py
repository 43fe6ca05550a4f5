"""The importer on generated catalogues with known defects: each bad row skipped with its reason,
nothing valid lost, re-imports idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from db.importer import CatalogueFormatError, import_catalogue
from db.session import make_engine, session_scope
from db.tables import Category, LabelHistory, Product
from db.tables import Image as ImageRow
from tests.helpers import image_row, photo, product_row, write_catalogue


@pytest.fixture
def engine(catalogue_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(catalogue_url)
    yield engine
    engine.dispose()


def _counts(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(Product)), session.scalar(select(func.count()).select_from(ImageRow))


def _defective_catalogue(folder: Path) -> Path:
    good_jpeg = photo()
    products = [
        product_row("p1"),
        product_row("p2", category="Phones, Mobile Phones & Telecoms / Mobile Phones / Apple iPhone"),
        product_row("p3", price="free to collector"),
        product_row("p1", product_name="Second p1 | Gumtree"),
        product_row("p4", category=""),
        product_row("p5", product_name=" | Gumtree"),
        product_row("p6", price="£1,250.00"),
        product_row("../evil"),
    ]
    images = [
        image_row("i1", "p1"),
        image_row("i2", "p1"),  # corrupt JPEG
        image_row("i3", "p2"),  # PNG with alpha
        image_row("i4", "p2"),  # 1x1
        image_row("i5", "p6"),  # file missing
        image_row("i6", "p3"),  # product skipped
        image_row("i1", "p2"),  # duplicate image id
        image_row("..", "p1"),  # path traversal
        image_row("i7", "p6"),  # text file named .jpg
    ]
    photos = {
        "i1": good_jpeg,
        "i2": b"\xff\xd8\xff\xe0 not really a jpeg",
        "i3": Image.new("RGBA", (32, 16), (0, 0, 255, 128)),
        "i4": Image.new("RGB", (1, 1), (255, 255, 255)),
        "i6": good_jpeg,
        "i7": b"hello, I am text",
    }
    return write_catalogue(folder, products, images, photos=photos)


def test_bad_rows_are_skipped_with_reasons_and_valid_rows_kept(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    source = _defective_catalogue(tmp_path / "source")
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")

    reasons = {(row.file, row.row_id): row.reason for row in report.skipped}
    assert reasons[("Products.csv", "p3")].startswith("bad price")
    assert reasons[("Products.csv", "p1")].startswith("duplicate id")
    assert reasons[("Products.csv", "p4")] == "missing category"
    assert reasons[("Products.csv", "p5")] == "missing name"
    assert reasons[("Products.csv", "../evil")].startswith("bad id")
    assert reasons[("Images.csv", "i2")].startswith("image unreadable")
    assert reasons[("Images.csv", "i7")].startswith("image unreadable")
    assert reasons[("Images.csv", "i5")].startswith("image file missing")
    assert reasons[("Images.csv", "i6")].startswith("unknown product")
    assert reasons[("Images.csv", "i1")].startswith("duplicate image id")
    assert reasons[("Images.csv", "..")].startswith("bad image id")
    assert len(report.skipped) == 11

    assert (report.products_added, report.images_added) == (3, 3)
    assert _counts(engine) == (3, 3)
    with session_scope(engine) as session:
        p1 = session.scalar(select(Product).where(Product.id == "p1"))
        assert p1.name == "Item p1"  # the first row with the id won, suffix stripped
        assert [image.id for image in p1.images] == ["i1"]
        assert session.scalar(select(Product.price_pence).where(Product.id == "p6")) == 125000
        sizes = {image_id: width for image_id, width in session.execute(select(ImageRow.id, ImageRow.width))}
        assert sizes == {"i1": 64, "i3": 32, "i4": 1}
        paths = {category.path for category in session.scalars(select(Category))}
        assert {
            "Home & Garden",
            "Home & Garden / Garden & Patio",
            "Phones, Mobile Phones & Telecoms / Mobile Phones / Apple iPhone",
        } <= paths

    cleaned = Image.open(tmp_path / "media" / "i3" / "i3.jpg")
    assert cleaned.size == (32, 32) and cleaned.mode == "RGB"  # squared, never upscaled to 512
    assert Image.open(tmp_path / "media" / "i4" / "i4.jpg").size == (1, 1)
    assert (source / "images" / "i3.jpg").is_file()  # original kept


def test_fields_postgresql_would_refuse_are_skipped_rows_on_every_backend(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    products = [
        product_row("long-name", product_name="n" * 501),
        product_row("long-place", location="l" * 201),
        product_row("nul", product_description="fine\x00 till here"),
        product_row("ok"),
    ]
    report = import_catalogue(write_catalogue(tmp_path / "source", products, []), engine=engine, media_dir=tmp_path / "media")
    reasons = {row.row_id: row.reason for row in report.skipped}
    assert reasons == {
        "long-name": "name too long: 501 characters, the limit is 500",
        "long-place": "location too long: 201 characters, the limit is 200",
        "nul": "description holds a NUL character",
    }
    assert report.products_added == 1 and _counts(engine) == (1, 0)


def test_reimport_is_idempotent(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    source = _defective_catalogue(tmp_path / "source")
    import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    again = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert (again.products_added, again.products_updated, again.products_unchanged) == (0, 0, 3)
    assert (again.images_added, again.images_updated, again.images_unchanged) == (0, 0, 3)
    assert _counts(engine) == (3, 3)
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(LabelHistory)) == 0


def test_reimport_with_changes_updates_and_records_the_label_change(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    write_catalogue(tmp_path / "v1", [product_row("a"), product_row("b")], [image_row("ia", "a")], photos={"ia": photo()})
    import_catalogue(tmp_path / "v1", engine=engine, media_dir=tmp_path / "media")
    write_catalogue(
        tmp_path / "v2",
        [product_row("a", category="Appliances / Dishwashers"), product_row("b", price="£11.00"), product_row("c")],
        [image_row("ia", "a")],
        photos={"ia": photo((0, 0, 255))},
    )
    report = import_catalogue(tmp_path / "v2", engine=engine, media_dir=tmp_path / "media")
    assert (report.products_added, report.products_updated, report.products_unchanged) == (1, 2, 0)
    assert report.images_updated == 1
    with session_scope(engine) as session:
        history = session.scalars(select(LabelHistory)).one()
        assert (history.product_id, history.old_category.path, history.new_category.path) == (
            "a",
            "Home & Garden / Garden & Patio / Outdoor Settings & Furniture",
            "Appliances / Dishwashers",
        )
        assert history.source == "import"
        assert session.scalar(select(Product.label_version).where(Product.id == "a")) == 2
    assert Image.open(tmp_path / "media" / "ia" / "ia.jpg").getpixel((20, 20))[2] > 200  # new photo cleaned


def test_malformed_csv_rows_are_reported_not_fatal(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    source = write_catalogue(tmp_path / "source", [product_row("a"), product_row("b")], [])
    with (source / "Products.csv").open("a", encoding="utf-8") as handle:
        handle.write('9,c,"Name",Cat,desc,£1.00,Leeds,EXTRA,FIELDS\n')
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert report.products_added == 2
    assert [row.reason.split(":")[0] for row in report.skipped] == ["malformed row"]
    assert report.skipped[0].line == 4


def test_missing_columns_are_named(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    source = write_catalogue(tmp_path / "source", [{"id": "a", "product_name": "x"}], [])
    with pytest.raises(CatalogueFormatError, match="category, product_description, price, location"):
        import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert _counts(engine) == (0, 0)


def test_missing_folder_and_files(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogueFormatError, match="not a folder"):
        import_catalogue(tmp_path / "absent", engine=engine, media_dir=tmp_path / "media")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogueFormatError, match="Products.csv is missing"):
        import_catalogue(tmp_path / "empty", engine=engine, media_dir=tmp_path / "media")


def test_windows_1252_file_is_read_with_a_note(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    source = write_catalogue(tmp_path / "source", [product_row("a", product_name="Café table | Gumtree")], [])
    text = (source / "Products.csv").read_text(encoding="utf-8")
    (source / "Products.csv").write_bytes(text.encode("cp1252"))
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert report.products_added == 1
    assert any("Windows-1252" in note for note in report.notes)
    with session_scope(engine) as session:
        assert session.scalar(select(Product.name)) == "Café table"


def test_product_whose_photos_are_all_unreadable_is_kept_without_photos(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    source = write_catalogue(
        tmp_path / "source", [product_row("a")], [image_row("x1", "a"), image_row("x2", "a")], photos={"x1": b"junk", "x2": b""}
    )
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert report.products_added == 1 and report.images_imported == 0
    assert len(report.skipped) == 2
