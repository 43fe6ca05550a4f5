"""Search by meaning, by photo and hybrid over the full shared catalogue: the closest items first,
the filters respected, every hit explained; and the CLI's --mode and --image."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.main import main
from core.data.images import open_image
from db.queries import ProductFilters
from db.session import session_scope
from db.tables import Image
from services.search import SearchInputError, search_catalogue, similar_products
from tests.helpers import ImportedCatalogue, use_home

PHONES = "Phones, Mobile Phones & Telecoms"


def top_levels(result) -> Counter:  # type: ignore[no-untyped-def]
    return Counter(hit.product.top_level for hit in result.hits)


def test_semantic_search_finds_meaning_without_shared_words(shared_catalogue: ImportedCatalogue, shared_indexes) -> None:  # type: ignore[no-untyped-def]
    with session_scope(shared_catalogue.engine) as session:
        result = search_catalogue(session, mode="semantic", query="a smartphone to make calls", indexes=shared_indexes, limit=10)
    assert top_levels(result)[PHONES] >= 7
    assert all(hit.why.startswith("meaning similarity") for hit in result.hits)
    assert [hit.score for hit in result.hits] == sorted((hit.score for hit in result.hits), reverse=True)


def test_photo_search_puts_the_photographed_product_first(
    shared_catalogue: ImportedCatalogue, shared_indexes, marketplace_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    with session_scope(shared_catalogue.engine) as session:
        image = session.scalars(select(Image).order_by(Image.id).limit(1)).one()
        photo = open_image(marketplace_dir / "images" / f"{image.id}.jpg")
        result = search_catalogue(session, mode="photo", photos=[photo], indexes=shared_indexes, limit=8)
    assert result.hits[0].product.id == image.product_id
    assert result.hits[0].score > 0.95 and result.hits[0].why.startswith("photo similarity")
    assert len({hit.product.id for hit in result.hits}) == len(result.hits)  # a product appears once


def test_hybrid_fuses_both_rankings_and_says_so(shared_catalogue: ImportedCatalogue, shared_indexes) -> None:  # type: ignore[no-untyped-def]
    with session_scope(shared_catalogue.engine) as session:
        result = search_catalogue(session, mode="hybrid", query="iphone 12", indexes=shared_indexes, limit=10)
    assert top_levels(result)[PHONES] >= 8
    first = result.hits[0]
    assert set(first.ranks) == {"keyword", "semantic"} and "keyword #" in first.why and "meaning #" in first.why
    assert first.snippet or "iphone" in first.product.name.lower()


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_every_mode_respects_the_filters(shared_catalogue: ImportedCatalogue, shared_indexes, mode: str) -> None:  # type: ignore[no-untyped-def]
    filters = ProductFilters(category="Home & Garden", max_price=50, location="London")
    with session_scope(shared_catalogue.engine) as session:
        result = search_catalogue(session, mode=mode, query="chair", indexes=shared_indexes, filters=filters, limit=20)
    assert result.hits
    for hit in result.hits:
        assert hit.product.top_level == "Home & Garden" and hit.product.price <= 50 and "london" in hit.product.location.lower()


def test_missing_input_is_explained(shared_catalogue: ImportedCatalogue, shared_indexes) -> None:  # type: ignore[no-untyped-def]
    with session_scope(shared_catalogue.engine) as session:
        with pytest.raises(SearchInputError, match="needs a photo"):
            search_catalogue(session, mode="photo", indexes=shared_indexes)
        with pytest.raises(SearchInputError, match="words"):
            search_catalogue(session, mode="semantic", query=" !!! ", indexes=shared_indexes)


def test_similar_items_of_a_listing(shared_catalogue: ImportedCatalogue, shared_indexes) -> None:  # type: ignore[no-untyped-def]
    with session_scope(shared_catalogue.engine) as session:
        similar = similar_products(session, shared_indexes, text="ps4 console with two controllers", k=8)
    assert len(similar) == 8 and Counter(hit.product.top_level for hit in similar)["Video Games & Consoles"] >= 6


def test_cli_search_modes(
    shared_catalogue: ImportedCatalogue,
    shared_indexes,
    marketplace_dir: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_home(monkeypatch, shared_catalogue.home, database_url=shared_catalogue.database_url)
    assert main(["search", "something to sleep on", "--mode", "semantic", "--json", "--limit", "5"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["mode"] == "semantic" and len(payload["hits"]) == 5
    assert all(hit["why"].startswith("meaning similarity") for hit in payload["hits"])
    assert main(["search", "sofa", "--mode", "hybrid", "--limit", "3"]) == 0
    assert "3 hybrid hits" in capsys.readouterr().out
    photo = next((marketplace_dir / "images").glob("*.jpg"))
    assert main(["search", "--image", str(photo), "--json", "--limit", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "photo"
    assert main(["search", "--image", str(marketplace_dir / "absent.jpg")]) == 1
    assert "absent.jpg" in capsys.readouterr().err
