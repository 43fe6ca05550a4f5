"""Vectors in the catalogue when it is PostgreSQL: stored once and shared by every instance, searched by
pgvector's HNSW index with the filters in SQL (or, without the extension, in memory), with the same
answers as the exact in-memory search on SQLite."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import ARRAY, Connection, Engine, Float, event, func, literal, select, text

from benchmarks.common import PostgresServer
from core.data.catalogue import Catalogue
from core.data.images import open_image
from db.importer import import_catalogue
from db.queries import ProductFilters, training_catalogue
from db.session import make_engine, session_scope
from db.tables import Product
from db.vectors import (
    IVF_BUILD_MEMORY,
    IVF_LISTS_PER_ROOT,
    IVF_MIN_SCANNED_ROWS,
    IVF_PROBED_SHARE,
    IVF_PROBED_SHARE_NARROWED,
    SearchPlan,
    _hnsw_index_name,
    _sha1_category_index_name,
    category_index_name,
    ensure_vector_indexes,
    index_lists,
    ivf_build_memory,
    ivf_lists_for,
    ivf_probes_expression,
    ivf_probes_for,
    search_plan,
    uses_pgvector,
    write_vectors,
)
from services.catalogue_vectors import TEXT_SPACE, catalogue_embedding_progress, catalogue_indexes, embed_into_catalogue, vector_search_note
from services.review import fix_label
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


def _vector_plans(engine: Engine, search) -> list[str]:  # type: ignore[no-untyped-def]
    """The query plans of the nearest-neighbour statements `search()` runs."""
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "<=>" in statement or "<#>" in statement:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        search()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    with engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()
        # A catalogue this small is cheapest read whole and sorted; a large one is walked (the benchmark's plans).
        cursor.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
        plans = []
        for statement, parameters in statements:
            cursor.execute("EXPLAIN " + statement, parameters)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


def test_a_category_search_scans_that_categorys_index_and_follows_relabels(
    postgres_server: PostgresServer, source: Path, tmp_path: Path
) -> None:
    engine, catalogue = _imported(postgres_server.new_database(), source, tmp_path)
    indexes = catalogue_indexes(engine, catalogue, cache_dir=tmp_path / "cache")
    with engine.connect() as connection:
        tops = dict(connection.execute(text("SELECT path, id FROM categories WHERE depth = 0")).all())
    appliances = ProductFilters(category="appliances")
    plans = _vector_plans(engine, lambda: indexes.text.filtered(appliances).search(indexes.text_query("fridge"), k=3))
    assert plans and category_index_name(TEXT_SPACE, tops["Appliances"]) in plans[0]
    plans = _vector_plans(engine, lambda: indexes.text.search(indexes.text_query("fridge"), k=3))
    assert plans and _hnsw_index_name(TEXT_SPACE) in plans[0]

    moved = next(product for product in catalogue.products if product.label == "Sports, Leisure & Travel")
    sports = ProductFilters(category="Sports, Leisure & Travel")
    assert _ids(engine, indexes, "semantic", moved.text, sports)[0] == moved.id
    with session_scope(engine) as session:
        version = session.scalar(select(Product.label_version).where(Product.id == moved.id))
    fix_label(engine, moved.id, new_category="Appliances / Other", changed_by="tester", seen_version=int(version or 1))
    assert _ids(engine, indexes, "semantic", moved.text, appliances)[0] == moved.id  # the trigger moved its vectors
    assert moved.id not in _ids(engine, indexes, "semantic", moved.text, sports)


def test_vectors_stored_before_rows_carried_their_category_gain_it(postgres_server: PostgresServer, source: Path, tmp_path: Path) -> None:
    url = postgres_server.new_database()
    engine, catalogue = _imported(url, source, tmp_path)
    embed_into_catalogue(engine, catalogue, cache_dir=tmp_path / "cache")
    with engine.begin() as connection:  # a catalogue as the previous version left it
        connection.execute(text("DROP TRIGGER marketplace_vector_top_category ON catalogue_vectors"))
        connection.execute(text("DROP TRIGGER marketplace_relabel_vectors ON products"))
        connection.execute(text("ALTER TABLE catalogue_vectors DROP COLUMN top_category_id"))
    engine.dispose()
    upgraded = make_engine(url)
    with upgraded.connect() as connection:
        wrong = connection.scalar(
            text(
                "SELECT count(*) FROM catalogue_vectors v JOIN products p ON p.id = v.product_id JOIN categories c ON c.id = p.category_id "
                "JOIN categories t ON t.id = v.top_category_id WHERE split_part(c.path, ' / ', 1) <> t.path OR v.top_category_id IS NULL"
            )
        )
        total = connection.scalar(text("SELECT count(*) FROM catalogue_vectors WHERE top_category_id IS NOT NULL"))
    assert wrong == 0 and total == len(catalogue.products) + len(catalogue.images)


def test_each_category_gets_an_index_sized_to_it_and_built_again_when_it_grows(
    postgres_server: PostgresServer, source: Path, tmp_path: Path
) -> None:
    engine, catalogue = _imported(postgres_server.new_database(), source, tmp_path)
    embed_into_catalogue(engine, catalogue, cache_dir=tmp_path / "cache")
    with engine.connect() as connection:
        counts = dict(
            connection.execute(
                text("SELECT top_category_id, count(*) FROM catalogue_vectors WHERE space = :space GROUP BY top_category_id"),
                {"space": TEXT_SPACE},
            ).all()
        )
        for top_category_id, rows in counts.items():
            assert index_lists(connection, category_index_name(TEXT_SPACE, top_category_id)) == ivf_lists_for(rows, 384)
    largest = max(counts, key=counts.__getitem__)
    assert ivf_lists_for(counts[largest], 384) >= 2
    with engine.begin() as connection:  # as if built when the category was a quarter of its size, by an older version
        connection.execute(text(f"DROP INDEX {category_index_name(TEXT_SPACE, largest)}"))
        connection.execute(
            text(
                f"CREATE INDEX {category_index_name(TEXT_SPACE, largest)} ON catalogue_vectors USING ivfflat "
                f"((embedding::vector(384)) vector_ip_ops) WITH (lists = 1) WHERE space = '{TEXT_SPACE}' AND top_category_id = {largest}"
            )
        )
        connection.execute(
            text(
                f"CREATE INDEX {_hnsw_index_name(TEXT_SPACE, largest)} ON catalogue_vectors USING hnsw "
                f"((embedding::vector(384)) vector_cosine_ops) WHERE space = '{TEXT_SPACE}' AND top_category_id = {largest}"
            )
        )
    ensure_vector_indexes(engine, TEXT_SPACE, 384)
    with engine.connect() as connection:
        assert index_lists(connection, category_index_name(TEXT_SPACE, largest)) == ivf_lists_for(counts[largest], 384)
        assert index_lists(connection, _hnsw_index_name(TEXT_SPACE, largest)) is None  # the older per-category graph is gone
        assert (
            connection.scalar(text("SELECT count(*) FROM pg_class WHERE relname = :name"), {"name": _hnsw_index_name(TEXT_SPACE, largest)})
            == 0
        )
    engine.dispose()


def test_a_category_index_named_as_before_is_renamed_not_built_again(postgres_server: PostgresServer, source: Path, tmp_path: Path) -> None:
    engine, catalogue = _imported(postgres_server.new_database(), source, tmp_path)
    embed_into_catalogue(engine, catalogue, cache_dir=tmp_path / "cache")
    oid_of = text("SELECT oid FROM pg_class WHERE relname = :name")
    with engine.begin() as connection:
        top = int(connection.scalar(text("SELECT id FROM categories WHERE path = 'Appliances'")))
        name, older_name = category_index_name(TEXT_SPACE, top), _sha1_category_index_name(TEXT_SPACE, top)
        built = connection.scalar(oid_of, {"name": name})
        connection.execute(text(f"ALTER INDEX {name} RENAME TO {older_name}"))  # as an older version named it
    ensure_vector_indexes(engine, TEXT_SPACE, 384)
    with engine.connect() as connection:
        assert connection.scalar(oid_of, {"name": name}) == built and connection.scalar(oid_of, {"name": older_name}) is None
    engine.dispose()


def test_a_category_index_scans_a_share_of_its_lists_and_a_small_category_whole() -> None:
    def probes(rows: int, *, narrowed: bool = False) -> int:
        return ivf_probes_for(ivf_lists_for(rows, 384), rows=rows, narrowed=narrowed)

    assert probes(500) == ivf_lists_for(500, 384)  # the shared catalogue's appliances: read whole
    assert probes(IVF_MIN_SCANNED_ROWS) == ivf_lists_for(IVF_MIN_SCANNED_ROWS, 384)
    assert ivf_lists_for(5, 384) == 5  # no more lists than rows
    lists = ivf_lists_for(1_000_000, 384)
    assert probes(1_000_000) == math.ceil(lists * IVF_PROBED_SHARE) < lists
    assert probes(1_000_000) * 1_000_000 / lists >= IVF_MIN_SCANNED_ROWS
    # A price range (or a subcategory, a location) cuts the category too: its nearest rows lie further out.
    assert probes(1_000_000, narrowed=True) == math.ceil(lists * IVF_PROBED_SHARE_NARROWED) > probes(1_000_000)
    assert probes(500, narrowed=True) == ivf_lists_for(500, 384)
    # The rows a list holds come from the index itself (an index built by an older version has other lists).
    assert ivf_probes_for(1_000, rows=20_000) == math.ceil(1_000 * IVF_MIN_SCANNED_ROWS / 20_000)


def test_lists_grow_with_a_category_within_the_build_memory() -> None:
    assert ivf_lists_for(100_000, 384) == IVF_LISTS_PER_ROOT * math.isqrt(100_000)
    for rows in (10_000, 1_000_000, 100_000_000):
        for dim in (384, 1280):
            assert ivf_build_memory(ivf_lists_for(rows, dim), dim, rows) <= IVF_BUILD_MEMORY
    assert ivf_lists_for(100_000_000, 1280) < IVF_LISTS_PER_ROOT * math.isqrt(100_000_000)


def test_the_build_memory_is_what_pgvector_asks_for_and_a_build_raises_the_servers_limit(
    postgres_server: PostgresServer, source: Path, tmp_path: Path
) -> None:
    engine, catalogue = _imported(postgres_server.new_database(), source, tmp_path)
    with engine.begin() as connection:  # the smallest limit the server takes: every k-means build needs more
        connection.execute(text(f"ALTER DATABASE {engine.url.database} SET maintenance_work_mem = '1MB'"))
    engine.dispose()
    # pgvector runs k-means (and checks its memory) only where a category has more rows than lists: a space of
    # 5,000 random vectors spread over the generated products.
    space, rows = "test:random", 5_000
    vectors = np.random.default_rng(0).standard_normal((rows, 384)).astype(np.float32)
    product_ids = [catalogue.products[number % len(catalogue.products)].id for number in range(rows)]
    write_vectors(engine, space, item_ids=[f"r{n}" for n in range(rows)], product_ids=product_ids, hashes=["x"] * rows, vectors=vectors)
    ensure_vector_indexes(engine, space, 384)
    with engine.connect() as connection:
        assert connection.scalar(text("SHOW maintenance_work_mem")) == "1MB"
        per_category = connection.execute(
            text("SELECT top_category_id, count(*) FROM catalogue_vectors WHERE space = :space GROUP BY 1"), {"space": space}
        ).all()
        for top_category_id, count in per_category:
            assert ivf_lists_for(count, 384) < count  # a real k-means build, within the limit it raised
            assert index_lists(connection, category_index_name(space, top_category_id)) == ivf_lists_for(count, 384)
    for lists in (200, 400):
        with pytest.raises(Exception, match="memory required is") as refused, engine.begin() as connection:
            connection.execute(
                text(
                    f"CREATE INDEX ix_too_big ON catalogue_vectors USING ivfflat ((embedding::vector(384)) vector_ip_ops) "
                    f"WITH (lists = {lists}) WHERE space = '{space}'"
                )
            )
        asked_mb = int(str(refused.value).split("memory required is ")[1].split(" MB")[0])  # pgvector rounds up
        estimate_mb = ivf_build_memory(lists, 384, rows) / 2**20
        assert asked_mb - 1 <= estimate_mb <= asked_mb * 1.1, (lists, asked_mb, estimate_mb)
    engine.dispose()


def test_a_category_search_cut_by_other_filters_scans_more_of_its_lists(
    postgres_server: PostgresServer, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, catalogue = _imported(postgres_server.new_database(), source, tmp_path)
    indexes = catalogue_indexes(engine, catalogue, cache_dir=tmp_path / "cache")
    # The generated categories are small enough to be read whole: shares that tell the two apart.
    monkeypatch.setattr("db.vectors.IVF_MIN_SCANNED_ROWS", 1)
    monkeypatch.setattr("db.vectors.IVF_PROBED_SHARE", 0.01)
    monkeypatch.setattr("db.vectors.IVF_PROBED_SHARE_NARROWED", 1.0)
    probes: list[tuple[int | None, str]] = []  # (the plan's probes, the server's setting for the search)

    def recording_plan(connection: Connection, *args, **kwargs) -> SearchPlan:  # type: ignore[no-untyped-def]
        plan = search_plan(connection, *args, **kwargs)
        probes.append((plan.probes, str(connection.scalar(text("SELECT current_setting('ivfflat.probes')")))))
        return plan

    monkeypatch.setattr("db.vectors.search_plan", recording_plan)
    for filters in (ProductFilters(category="Appliances"), ProductFilters(category="Appliances", max_price=1000)):
        assert indexes.text.filtered(filters).search(indexes.text_query("fridge"), k=3)
    with engine.connect() as connection:
        top = connection.scalar(text("SELECT id FROM categories WHERE path = 'Appliances'"))
        lists = index_lists(connection, category_index_name(TEXT_SPACE, int(top)))
    assert lists is not None and lists > 1 and probes == [(1, "1"), (lists, str(lists))]
    engine.dispose()


def test_the_server_computes_the_probes_by_the_same_rule(postgres_server: PostgresServer) -> None:
    engine = make_engine(postgres_server.new_database(), create_schema=False)
    counts = func.generate_series(1, 3_000).table_valued("lists").render_derived(name="counts")
    sizes = func.unnest(literal([1.0, 500.0, 10_000.0, 116_709.0, 1e6], ARRAY(Float))).table_valued("rows").render_derived(name="sizes")
    lists, rows = counts.c.lists, sizes.c.rows
    every_pair = counts.join(sizes, literal(True))
    with engine.connect() as connection:
        for narrowed in (False, True):
            probes_of = ivf_probes_expression(lists, rows, narrowed=narrowed)
            computed = connection.execute(select(lists, rows, probes_of).select_from(every_pair)).all()
            assert len(computed) == 15_000
            assert all(probes == ivf_probes_for(count, rows=size, narrowed=narrowed) for count, size, probes in computed), narrowed
    engine.dispose()


def test_a_search_plan_leaves_a_top_level_to_its_rows_and_looks_up_a_deeper_category(
    postgres_server: PostgresServer, source: Path, tmp_path: Path
) -> None:
    engine, catalogue = _imported(postgres_server.new_database(), source, tmp_path)
    embed_into_catalogue(engine, catalogue, cache_dir=tmp_path / "cache")
    deeper_path = next(product.category for product in catalogue.products if product.label == "Appliances")
    with engine.begin() as connection:
        categories = dict(connection.execute(text("SELECT path, id FROM categories")).all())
        top = search_plan(connection, TEXT_SPACE, ProductFilters(category="appliances", max_price=50), narrowed=True, ef_search=40)
        assert (top.top_category_id, top.filters.category, top.filters.max_price) == (categories["Appliances"], None, 50)
        assert top.lists == index_lists(connection, category_index_name(TEXT_SPACE, categories["Appliances"]))
        deeper = search_plan(connection, TEXT_SPACE, ProductFilters(category=deeper_path.upper()), narrowed=True, ef_search=40)
        assert deeper.top_category_id == categories["Appliances"] and deeper.filters.category_ids == (categories[deeper_path],)
        for unknown in ("Nowhere", "Appliances / Nowhere"):
            assert search_plan(connection, TEXT_SPACE, ProductFilters(category=unknown), narrowed=False, ef_search=40).matches_nothing
        whole = search_plan(connection, TEXT_SPACE, ProductFilters(), narrowed=False, ef_search=123)
        assert whole.top_category_id is None and whole.lists is None
        assert connection.scalar(text("SELECT current_setting('hnsw.ef_search')")) == "123"
    indexes = catalogue_indexes(engine, catalogue, cache_dir=tmp_path / "cache")
    assert indexes.text.filtered(ProductFilters(category="Nowhere")).search(indexes.text_query("fridge"), k=3) == []
    found = indexes.text.filtered(ProductFilters(category=deeper_path)).search(indexes.text_query("fridge"), k=50)
    labelled = {product.id: product.category for product in catalogue.products}
    assert found and all(labelled[neighbour.key] == deeper_path for neighbour in found)
    engine.dispose()
