"""Integration: the full shared data set imported into a temporary SQLite file."""

from __future__ import annotations

from collections import Counter

from db.importer import import_catalogue
from db.keyword_search import keyword_search
from db.queries import catalogue_counts
from db.session import session_scope
from tests.helpers import ImportedCatalogue


def test_full_import_counts(shared_catalogue: ImportedCatalogue) -> None:
    report = shared_catalogue.report
    assert (report.products_added, report.images_added) == (6082, 10732)
    assert report.skipped == []
    with session_scope(shared_catalogue.engine) as session:
        assert catalogue_counts(session) == (6082, 10732)


def test_iphone_search_returns_mostly_phones(shared_catalogue: ImportedCatalogue) -> None:
    with session_scope(shared_catalogue.engine) as session:
        hits = keyword_search(session, "iphone", limit=20).hits
    tops = Counter(hit.category.split(" / ")[0] for hit in hits)
    assert len(hits) == 20
    assert tops["Phones, Mobile Phones & Telecoms"] >= 15


def test_no_stored_description_leaks_the_label(shared_catalogue: ImportedCatalogue) -> None:
    from sqlalchemy import func, select

    from db.tables import Product

    with session_scope(shared_catalogue.engine) as session:
        assert session.scalar(select(func.count()).select_from(Product).where(Product.description.contains("Posted by"))) == 0
        assert session.scalar(select(func.count()).select_from(Product).where(Product.raw_description.contains("Posted by"))) > 400


def test_reimport_of_the_shared_data_changes_nothing(shared_catalogue: ImportedCatalogue, marketplace_dir) -> None:  # type: ignore[no-untyped-def]
    again = import_catalogue(marketplace_dir, engine=shared_catalogue.engine, media_dir=shared_catalogue.home / "images")
    assert (again.products_unchanged, again.images_unchanged) == (6082, 10732)
    assert again.products_added == again.products_updated == again.images_added == again.images_updated == 0
