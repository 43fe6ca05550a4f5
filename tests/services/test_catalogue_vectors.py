"""Vectors in the catalogue when it is PostgreSQL: stored once and shared by every instance, searched by
pgvector's HNSW index with the filters in SQL (or, without the extension, in memory), with the same
answers as the exact in-memory search on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from benchmarks.common import PostgresServer
from core.data.catalogue import Catalogue
from core.data.images import open_image
from db.importer import import_catalogue
from db.queries import ProductFilters, training_catalogue
from db.session import make_engine, session_scope
from db.vectors import uses_pgvector
from services.catalogue_vectors import catalogue_embedding_progress, catalogue_indexes, embed_into_catalogue, vector_search_note
from services.search import search_catalogue, similar_products
from tests.helpers import as_without_pgvector, generated_catalogue

SEARCHES = [
    ("semantic", "a pushchair for a toddler", ProductFilters()),
    ("semantic", "something to keep food cold", ProductFilters(category="appliances")),
    ("hybrid", "pram", ProductFilters()),
    ("hybrid", "bike", ProductFilters(category="sports, leisure & travel", max_price=10)),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_catalogue(tmp_path_factory.mktemp("vectors") / "source", per_class=5)


def _imported(url: str, source: Path, home: Path) -> tuple[Engine, Catalogue]:
    engine = make_engine(url)
    import_catalogue(source, engine=engine, media_dir=home / "images")
    with session_scope(engine) as session:
        return engine, training_catalogue(session, media_dir=home / "images")


def _hits(engine: Engine, indexes, mode: str, query: str, filters: ProductFilters, photo=None) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        result = search_catalogue(
            session, mode=mode, query=query, photos=[photo] if photo else [], indexes=indexes, filters=filters, limit=5
        )
    return [(hit.product.id, hit.score) for hit in result.hits]


def _ids(*args) -> list[str]:  # type: ignore[no-untyped-def]
    return [product_id for product_id, _ in _hits(*args)]


def _same_answer(found: list[tuple[str, float]], expected: list[tuple[str, float]]) -> bool:
    """The same products with the same scores in the same order, to float32 precision (products of equal score may swap)."""
    scores_agree = len(found) == len(expected) and all(abs(a[1] - b[1]) < 1e-5 for a, b in zip(found, expected))
    return scores_agree and {product for product, _ in found} == {product for product, _ in expected}


@pytest.mark.parametrize("storage", ["pgvector", "real[]"])
def test_postgresql_vector_search_answers_as_sqlite_does(
    postgres_server: PostgresServer, source: Path, tmp_path: Path, storage: str
) -> None:
    cache = tmp_path / "cache"  # one cache: the encoders run once for both catalogues
    lite, lite_catalogue = _imported(f"sqlite:///{tmp_path / 'lite.db'}", source, tmp_path / "lite")
    server, server_catalogue = _imported(postgres_server.new_database(), source, tmp_path / "server")
    if storage == "real[]":  # a server without pgvector: the vectors are kept as real[] and searched in memory
        as_without_pgvector(server)
    assert uses_pgvector(server) == (storage == "pgvector")
    assert ("pgvector HNSW" in vector_search_note(server)) == (storage == "pgvector")

    exact = catalogue_indexes(lite, lite_catalogue, cache_dir=cache)
    stored = catalogue_indexes(server, server_catalogue, cache_dir=cache)
    assert len(stored.text) == len(server_catalogue.products) and len(stored.photos) == len(server_catalogue.images)
    for mode, query, filters in SEARCHES:
        expected = _hits(lite, exact, mode, query, filters)
        assert expected and _same_answer(_hits(server, stored, mode, query, filters), expected), (mode, query, filters)
    image = server_catalogue.images[7]
    photo = open_image(image.path.read_bytes(), name=image.path.name)
    assert _same_answer(
        _hits(server, stored, "photo", "", ProductFilters(), photo), _hits(lite, exact, "photo", "", ProductFilters(), photo)
    )
    assert _ids(server, stored, "photo", "", ProductFilters(), photo)[0] == image.product_id
    with session_scope(server) as session:
        similar = similar_products(session, stored, text="pram for a baby", photos=[photo], k=4)
    assert len(similar) == 4


def test_another_instance_finds_the_vectors_in_the_catalogue(postgres_server: PostgresServer, source: Path, tmp_path: Path) -> None:
    engine, catalogue = _imported(postgres_server.new_database(), source, tmp_path / "first")
    assert not catalogue_embedding_progress(engine, catalogue, cache_dir=tmp_path / "first" / "cache").complete
    embed_into_catalogue(engine, catalogue, cache_dir=tmp_path / "first" / "cache")

    second_cache = tmp_path / "second" / "cache"  # another machine: an empty cache of its own
    assert catalogue_embedding_progress(engine, catalogue, cache_dir=second_cache).complete
    indexes = catalogue_indexes(engine, catalogue, cache_dir=second_cache)
    assert not list(second_cache.glob("**/*.npy"))  # nothing embedded again
    assert _ids(engine, indexes, "semantic", "pram", ProductFilters(category="Baby & Kids Stuff"))


def test_vectors_of_removed_photos_and_products_go(postgres_server: PostgresServer, source: Path, tmp_path: Path) -> None:
    engine, catalogue = _imported(postgres_server.new_database(), source, tmp_path)
    embed_into_catalogue(engine, catalogue, cache_dir=tmp_path / "cache")
    removed = catalogue.images[0]
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM images WHERE id = :id"), {"id": removed.id})
        connection.execute(text("DELETE FROM products WHERE id = :id"), {"id": catalogue.products[-1].id})
    with session_scope(engine) as session:
        smaller = training_catalogue(session, media_dir=tmp_path / "images")
    embed_into_catalogue(engine, smaller, cache_dir=tmp_path / "cache")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT split_part(space, ':', 1), count(*) FROM catalogue_vectors GROUP BY 1"))
        counts = {space: count for space, count in rows}
    assert counts == {"text": len(smaller.products), "photo": len(smaller.images)}
