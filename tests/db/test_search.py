"""Keyword search: escaping of hostile strings, ranking, filters, on a generated catalogue in SQLite and in PostgreSQL."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from benchmarks.common import PostgresServer
from core.search.keyword_query import MATCH_END, MATCH_START, fts_match_expression, query_terms
from db.importer import import_catalogue
from db.keyword_search import _postgres_statement, keyword_search, term_frequencies
from db.postgres import keyword_index_name
from db.queries import ProductFilters, browse_products, category_paths, get_product
from db.session import make_engine, session_scope
from db.tables import Category, Product
from tests.helpers import BACKENDS, product_row, write_catalogue

HOSTILE = [
    '"',
    'iphone"',
    "AND",
    "OR OR",
    "NOT sofa",
    "sofa*",
    "*",
    "(((",
    "sofa) OR (1=1",
    "name:sofa",
    "^sofa",
    "NEAR(sofa chair, 2)",
    "'; DROP TABLE products; --",
    "🙂🛋️",
    "ソファ",
    "\x00\x1f",
    "a" * 5000,
    "",
    "   ",
]


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("search")
    url = f"sqlite:///{folder / 'catalogue.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_server").new_database()
    products = [
        product_row(
            "sofa1",
            product_name="Grey corner sofa | Gumtree",
            product_description="Comfortable sofa, grey fabric.",
            price="£120.00",
            location="Leeds, West Yorkshire",
            category="Home & Garden / Dining, Living Room Furniture / Sofas",
        ),
        product_row(
            "sofa2",
            product_name="Leather armchair | Gumtree",
            product_description="Matches a sofa. Posted by Ann in Sofas in Leeds. 25 February 2022",
            price="£60.00",
            location="York, North Yorkshire",
            category="Home & Garden / Dining, Living Room Furniture / Sofas",
        ),
        product_row(
            "phone1",
            product_name="iPhone 12 Pro | Gumtree",
            product_description="Unlocked iPhone, boxed.",
            price="£500.00",
            location="Camden, London",
            category="Phones, Mobile Phones & Telecoms / Mobile Phones / Apple iPhone",
        ),
        product_row(
            "phone2",
            product_name="Phone case | Gumtree",
            product_description="Case for iPhone 12.",
            price="£5.00",
            location="Croydon, London",
            category="Phones, Mobile Phones & Telecoms / Mobile Phone Accessories",
        ),
        product_row(
            "kettle",
            product_name="Kettle | Gumtree",
            product_description="Électrique, runs fine",
            price="£8.00",
            location="Leeds, West Yorkshire",
            category="Appliances",
        ),
    ]
    write_catalogue(folder / "source", products, [])
    engine = make_engine(url)
    import_catalogue(folder / "source", engine=engine, media_dir=folder / "media")
    yield engine
    engine.dispose()


def _ids(engine, query: str, **filters) -> list[str]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return [hit.product.id for hit in keyword_search(session, query, filters=ProductFilters(**filters)).hits]


def test_name_matches_rank_above_description_matches(engine) -> None:  # type: ignore[no-untyped-def]
    assert _ids(engine, "sofa") == ["sofa1", "sofa2"]
    assert _ids(engine, "iphone")[0] == "phone1"


def test_porter_stemming_and_diacritics(engine) -> None:  # type: ignore[no-untyped-def]
    assert _ids(engine, "sofas") == ["sofa1", "sofa2"]
    assert _ids(engine, "electrique run") == ["kettle"]


def test_the_snippet_marks_the_matched_words(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        (hit,) = keyword_search(session, "fabric").hits
    assert hit.product.id == "sofa1" and f"{MATCH_START}fabric{MATCH_END}" in hit.snippet and hit.score > 0


def test_a_stop_word_is_still_a_word(engine) -> None:  # type: ignore[no-untyped-def]
    assert _ids(engine, "for") == ["phone2"]  # "Case for iPhone 12."


def test_a_querys_stop_words_are_required_with_its_other_words(engine) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL finds the other words through its index and checks the stop words on the rows it yields.
    with session_scope(engine) as session:
        result = keyword_search(session, "iphone for")
    assert not result.matched_any_term and [hit.product.id for hit in result.hits] == ["phone2"]  # phone1 lacks "for"


def test_boilerplate_is_not_searchable(engine) -> None:  # type: ignore[no-untyped-def]
    assert _ids(engine, "Posted Ann") == []


def test_all_words_first_then_any_word(engine) -> None:  # type: ignore[no-untyped-def]
    assert _ids(engine, "grey sofa") == ["sofa1"]
    with session_scope(engine) as session:
        result = keyword_search(session, "sofa zebra")
    assert result.matched_any_term and [hit.product.id for hit in result.hits] == ["sofa1", "sofa2"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_any_word_fallback_puts_the_rarest_words_first(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_server").new_database()
    # Thirty listings hold only the common word, ahead of the one that holds the rare word too: PostgreSQL ranks
    # only the first candidates its index yields, here fewer than the common word's matches.
    rows = [product_row(f"common{number}", product_description="Outgrown at 6 months.") for number in range(30)]
    rows.append(product_row("baby", product_name="Baby bundle | Gumtree", product_description="Baby clothes, 6 months."))
    write_catalogue(tmp_path / "source", rows, [])
    engine = make_engine(url)
    import_catalogue(tmp_path / "source", engine=engine, media_dir=tmp_path / "media")
    monkeypatch.setattr("db.keyword_search.RANKED_CANDIDATES", 5)
    monkeypatch.setattr("db.keyword_search.FILL_CANDIDATES", 5)
    with session_scope(engine) as session:
        if backend == "postgresql":
            frequency = term_frequencies(session, ["months", "baby", "zebra"])
            assert frequency["months"] > frequency["baby"] >= frequency["zebra"] == 0
        result = keyword_search(session, "months zebra baby", limit=10)
    ids = [hit.product.id for hit in result.hits]
    assert result.matched_any_term and ids[0] == "baby"
    assert len(ids) > 1 and set(ids[1:]) <= {f"common{number}" for number in range(30)}  # any word fills the rest
    engine.dispose()


def test_a_snippet_marks_a_match_in_a_long_description(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        product = session.scalars(select(Product).where(Product.id == "kettle")).one()
        product.description = "Runs fine. " + "Descaled weekly. " * 2000
        session.flush()
        (hit,) = keyword_search(session, "descaled").hits
        assert f"{MATCH_START}Descaled{MATCH_END}" in hit.snippet and len(hit.snippet) < 300
        session.rollback()


def test_filters(engine) -> None:  # type: ignore[no-untyped-def]
    assert _ids(engine, "iphone", category="Phones, Mobile Phones & Telecoms / Mobile Phone Accessories") == ["phone2"]
    assert _ids(engine, "iphone", category="Phones, Mobile Phones") == []  # a path prefix, not a substring
    assert _ids(engine, "iphone", category="phones, mobile phones & TELECOMS") == ["phone1", "phone2"]  # any letter case
    assert _ids(engine, "sofa", category="home & garden / dining, living room furniture / sofas") == ["sofa1", "sofa2"]
    assert _ids(engine, "sofa", max_price=Decimal("100")) == ["sofa2"]
    assert _ids(engine, "sofa", min_price=100) == ["sofa1"]
    assert _ids(engine, "sofa", location="yorkshire") == ["sofa1", "sofa2"]
    assert _ids(engine, "sofa", location="NORTH york") == ["sofa2"]
    assert _ids(engine, "iphone", location="%") == []  # LIKE wildcards are escaped


def test_a_top_level_filter_holds_its_whole_subtree(engine) -> None:  # type: ignore[no-untyped-def]
    # On PostgreSQL a top level is searched through its own partial index (db.postgres), subcategories in it.
    assert _ids(engine, "sofa", category="HOME & garden") == ["sofa1", "sofa2"]
    assert _ids(engine, "sofa", category="Home & Garden", max_price=100) == ["sofa2"]
    assert _ids(engine, "iphone", category="Phones, Mobile Phones & Telecoms", location="camden") == ["phone1"]
    assert _ids(engine, "kettle electrique", category="Appliances") == ["kettle"]
    assert _ids(engine, "sofa", category="Appliances") == []
    assert _ids(engine, "sofa", category="Nowhere") == []
    assert _ids(engine, "kettle", category="Appliances / Nowhere") == []


def test_filters_that_cut_a_top_level(engine) -> None:  # type: ignore[no-untyped-def]
    assert not ProductFilters(category="Appliances").narrows_top_level
    assert not ProductFilters().narrows_top_level
    for narrowing in (
        ProductFilters(category="Appliances / Kettles"),
        ProductFilters(category="Appliances", max_price=10),
        ProductFilters(min_price=1),
        ProductFilters(category="Appliances", location="leeds"),
    ):
        assert narrowing.narrows_top_level


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_relabelled_product_is_found_under_its_new_top_level(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_server").new_database()
    rows = [
        product_row("a", product_name="Blue kettle | Gumtree", category="Appliances / Kettles"),
        product_row("b", product_name="Blue sofa | Gumtree", category="Home & Garden / Sofas"),
    ]
    write_catalogue(tmp_path / "source", rows, [])
    engine = make_engine(url)
    import_catalogue(tmp_path / "source", engine=engine, media_dir=tmp_path / "media")
    with session_scope(engine) as session:
        product = session.scalars(select(Product).where(Product.id == "b")).one()
        product.category_id = session.scalars(select(Category.id).where(Category.path == "Appliances / Kettles")).one()
    assert _ids(engine, "blue", category="Appliances") == ["a", "b"]
    assert _ids(engine, "blue", category="Home & Garden") == []
    engine.dispose()


def test_a_top_level_filter_reads_its_own_index_on_postgresql(postgres_server: PostgresServer, tmp_path: Path) -> None:
    engine = make_engine(postgres_server.new_database())
    rows = [product_row(f"p{number}", category=category) for number, category in enumerate(["Appliances / Kettles", "Home & Garden"] * 3)]
    write_catalogue(tmp_path / "source", rows, [])
    import_catalogue(tmp_path / "source", engine=engine, media_dir=tmp_path / "media")
    with session_scope(engine) as session:
        appliances = session.scalars(select(Category.id).where(Category.path == "Appliances")).one()
        tops = dict(session.execute(text("SELECT id, top_category_id FROM products")).all())
        assert set(tops.values()) == set(session.scalars(select(Category.id).where(Category.depth == 0)))
        kettles = session.scalars(select(Category.id).where(Category.path == "Appliances / Kettles")).one()

        def within(filters: ProductFilters) -> tuple[ProductFilters, int | None] | None:
            row = session.execute(select(*filters.top_level_columns())).one()
            return filters.by_top_level(row.top_id, row.subtree)

        # A whole top level is left to its id; a deeper category keeps its subtree, under its top level's id.
        assert within(ProductFilters(category="APPLIANCES", max_price=5)) == (ProductFilters(max_price=5), appliances)
        assert within(ProductFilters(category="appliances / kettles")) == (
            ProductFilters(category="appliances / kettles", category_ids=(kettles,)),
            appliances,
        )
        assert within(ProductFilters(min_price=1)) == (ProductFilters(min_price=1), None)
        for unknown in ("Nowhere", "Appliances / Nowhere"):
            assert within(ProductFilters(category=unknown)) is None  # nothing can match
    statement = _postgres_statement("item", filters=ProductFilters(), limit=5, top_category_id=appliances)
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection, connection.begin() as transaction:
        # Six rows are cheapest read whole, or through the (top level, price) index: both out of the way here.
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        connection.execute(text("DROP INDEX ix_products_top_category_price"))
        plan = "\n".join(connection.scalars(text(f"EXPLAIN {sql}")))
        transaction.rollback()
    assert keyword_index_name(appliances) in plan
    engine.dispose()


def test_an_older_postgresql_catalogue_gains_the_products_top_levels(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.new_database()
    engine = make_engine(url)
    write_catalogue(tmp_path / "source", [product_row("a", category="Appliances / Kettles")], [])
    import_catalogue(tmp_path / "source", engine=engine, media_dir=tmp_path / "media")
    with engine.begin() as connection:  # as a catalogue made before products carried their top level
        connection.execute(text("DROP TRIGGER marketplace_product_top_category ON products"))
        connection.execute(text("ALTER TABLE products DROP COLUMN top_category_id CASCADE"))
    engine.dispose()
    engine = make_engine(url)
    assert _ids(engine, "item", category="Appliances") == ["a"]
    with session_scope(engine) as session:
        assert session.scalar(text("SELECT count(*) FROM products WHERE top_category_id IS NULL")) == 0
        trigger = session.scalar(text("SELECT count(*) FROM pg_trigger WHERE tgname = 'marketplace_product_top_category'"))
        assert trigger == 1
    engine.dispose()


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_strings_never_break_the_query(engine, query: str) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        result = keyword_search(session, query)
        assert isinstance(result.hits, list)
        assert session.execute(text("SELECT count(*) FROM products")).scalar() == 5


def _fts_table_holding(text_value: str):  # type: ignore[no-untyped-def]
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='porter unicode61 remove_diacritics 2')")
    connection.execute("INSERT INTO t VALUES (?)", (text_value,))
    return connection


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_string_is_a_valid_fts_query(query: str) -> None:
    expression = fts_match_expression(query)
    if expression is None:
        assert query_terms(query) == []
        return
    connection = _fts_table_holding(query)
    for candidate in (expression, fts_match_expression(query, any_term=True)):
        connection.execute("SELECT count(*) FROM t WHERE t MATCH ?", (candidate,)).fetchone()  # no syntax error


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=200))
def test_a_text_is_found_by_its_own_words(query: str) -> None:
    # SQLite's Unicode tables are older than Python's, so the exact-match property is checked on Latin-1.
    expression = fts_match_expression(query)
    if expression is None:
        return
    connection = _fts_table_holding(query)
    assert connection.execute("SELECT count(*) FROM t WHERE t MATCH ?", (expression,)).fetchone()[0] == 1


def test_query_terms() -> None:
    assert query_terms('iPhone "12" AND pro-max iphone_x') == ["iphone", "12", "and", "pro", "max", "x"]
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == 32


def test_browse_paginates_and_filters(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        first = browse_products(session, page=1, page_size=2)
        last = browse_products(session, page=99, page_size=2)
        assert (first.total, first.pages, len(first.products)) == (5, 3, 2)
        assert (last.page, len(last.products)) == (3, 1)  # clamped to the last page
        assert browse_products(session, filters=ProductFilters(category="Appliances")).total == 1
        assert category_paths(session) == ["Appliances", "Home & Garden", "Phones, Mobile Phones & Telecoms"]
        assert category_paths(session, parent="Phones, Mobile Phones & Telecoms") == [
            "Phones, Mobile Phones & Telecoms / Mobile Phone Accessories",
            "Phones, Mobile Phones & Telecoms / Mobile Phones",
        ]
        detail = get_product(session, "sofa2")
        assert detail is not None and detail.description == "Matches a sofa."
        assert get_product(session, "nope") is None
