"""Uploaded photos are read one by one (bad ones explained, good ones kept); an uploaded listing is
saved with its photos and a label-history row, or not at all."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from core.data.images import ImageError
from core.data.uploads import read_uploaded_photos
from db.importer import import_catalogue
from db.session import make_engine, session_scope
from db.tables import LabelHistory, Product, ReviewItem
from services.listings import ListingError, NewListing, UploadedPhoto, add_listing
from services.review import review_card
from tests.helpers import product_row, row_counts, write_catalogue


def jpeg(colour: tuple[int, int, int] = (10, 200, 30), size: tuple[int, int] = (80, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_bad_uploads_are_explained_and_good_ones_kept() -> None:
    read = read_uploaded_photos(
        [("good.jpg", jpeg()), ("empty.jpg", b""), ("text.jpg", b"hello"), ("big.jpg", b"x" * 2000), ("also good.jpg", jpeg((1, 2, 3)))],
        max_bytes=1500,
    )
    assert [name for name, _ in read.files] == ["good.jpg", "also good.jpg"] and len(read.photos) == 2
    assert len(read.problems) == 3
    assert read.problems[0].startswith("empty.jpg") and "empty" in read.problems[0]
    assert read.problems[1].startswith("text.jpg") and "not a readable image" in read.problems[1]
    assert read.problems[2].startswith("big.jpg") and "limit" in read.problems[2]
    assert len(read_uploaded_photos([(f"{n}.jpg", jpeg()) for n in range(3)], max_photos=2).problems) == 1


@pytest.fixture
def catalogue(tmp_path: Path, catalogue_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(catalogue_url)
    source = write_catalogue(
        tmp_path / "source", [product_row("a", category="Home & Garden / Garden & Patio / Outdoor Settings & Furniture")], []
    )
    import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    return engine, tmp_path / "media"


def test_an_uploaded_listing_is_saved_with_photos_and_history(catalogue) -> None:  # type: ignore[no-untyped-def]
    engine, media = catalogue
    listing = NewListing(
        name="Teak bench | in York, North Yorkshire | Gumtree",
        description="Solid teak.\r\nSeats three.",
        price=Decimal("85.50"),
        location="York,  North Yorkshire",
        category="Home & Garden / Garden & Patio",
        photos=[UploadedPhoto("bench.jpg", jpeg()), UploadedPhoto("side.jpg", jpeg((200, 0, 0), (30, 90)))],
        predicted_category="Home & Garden",
        confidence=0.91,
        model="combined",
    )
    product_id = add_listing(engine, listing, media_dir=media, added_by="ana")
    with session_scope(engine) as session:
        product = session.scalar(select(Product).where(Product.id == product_id))
        assert product is not None and product.name == "Teak bench" and product.price_pence == 8550 and product.source == "upload"
        assert product.description == "Solid teak.\nSeats three." and product.location == "York, North Yorkshire"
        assert product.category.path == "Home & Garden / Garden & Patio"
        assert [image.position for image in product.images] == [0, 1]
        assert all((media / image.file_path).is_file() for image in product.images)
        assert Image.open(media / product.images[1].file_path).size == (90, 90)  # cleaned onto a square canvas
        history = session.scalars(select(LabelHistory).where(LabelHistory.product_id == product_id)).all()
        assert len(history) == 1 and history[0].source == "upload" and history[0].changed_by == "ana"
        assert history[0].confidence == pytest.approx(0.91) and history[0].old_category_id is None
        assert "combined model predicted Home & Garden" in history[0].reason


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"category": "Nowhere / Else"}, ListingError),
        ({"name": "   "}, ListingError),
        ({"price": Decimal("-1")}, ListingError),
        ({"photos": [UploadedPhoto("ok.jpg", jpeg()), UploadedPhoto("broken.jpg", jpeg()[:40])]}, ImageError),
    ],
)
def test_a_refused_listing_writes_nothing(catalogue, change: dict, error: type) -> None:  # type: ignore[no-untyped-def]
    engine, media = catalogue
    before = row_counts(engine)
    files_before = sorted(media.rglob("*"))
    fields = {
        "name": "Bench",
        "description": "",
        "price": Decimal("5"),
        "location": "",
        "category": "Home & Garden",
        "photos": [UploadedPhoto("ok.jpg", jpeg())],
        **change,
    }
    with pytest.raises(error):
        add_listing(engine, NewListing(**fields), media_dir=media, added_by="ana")
    assert row_counts(engine) == before
    assert sorted(media.rglob("*")) == files_before  # no orphan photo left behind


def test_a_low_confidence_upload_joins_the_review_queue(catalogue) -> None:  # type: ignore[no-untyped-def]
    engine, media = catalogue
    unsure = NewListing(
        name="Mystery item",
        description="",
        price=Decimal("3"),
        location="",
        category="Home & Garden",
        confidence=0.2,
        predicted_category="Appliances",
        model="text",
        top=[("Appliances", 0.6), ("Home & Garden", 0.2), ("Other Goods", 0.1)],
    )
    sure = NewListing(
        name="Garden bench",
        description="",
        price=Decimal("3"),
        location="",
        category="Home & Garden",
        confidence=0.9,
        predicted_category="Home & Garden",
        model="text",
        top=[("Home & Garden", 0.9)],
    )
    unsure_id = add_listing(engine, unsure, media_dir=media, added_by="ana")
    add_listing(engine, sure, media_dir=media, added_by="ana")
    with session_scope(engine) as session:
        queued = session.scalars(select(ReviewItem)).all()
        assert [(item.product_id, item.source, item.suggested_label, item.given_label) for item in queued] == [
            (unsure_id, "upload", "Appliances", "Home & Garden")
        ]
        assert queued[0].score == pytest.approx(0.2) and len(queued[0].top) == 3


def test_an_upload_the_model_is_not_sure_of_joins_the_queue_with_its_set(catalogue) -> None:  # type: ignore[no-untyped-def]
    engine, media = catalogue

    def listing(name: str, *, confident: bool) -> NewListing:
        return NewListing(
            name=name,
            description="",
            price=Decimal("3"),
            location="",
            category="Home & Garden",
            confidence=0.7,  # the model's best answer is the category it is filed under
            predicted_category="Home & Garden",
            model="combined",
            top=[("Home & Garden", 0.7), ("Other Goods", 0.2), ("Appliances", 0.05)],
            confident=confident,
            prediction_set=["Home & Garden"] if confident else ["Home & Garden", "Other Goods"],
        )

    unsure_id = add_listing(engine, listing("Letter cage", confident=False), media_dir=media, added_by="ana")
    add_listing(engine, listing("Garden bench", confident=True), media_dir=media, added_by="ana")
    with session_scope(engine) as session:
        queued = session.scalars(select(ReviewItem)).all()
        assert [(item.product_id, item.prediction_set) for item in queued] == [(unsure_id, ["Home & Garden", "Other Goods"])]
    assert review_card(engine, unsure_id).prediction_set == ["Home & Garden", "Other Goods"]  # type: ignore[union-attr]
