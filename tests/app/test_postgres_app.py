"""The app on a PostgreSQL catalogue: every page runs, keyword search answers from PostgreSQL's own
full-text index, and a label fixed by another instance shows on this one's next page run."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from benchmarks.common import PostgresServer
from core.settings import get_settings
from db.importer import import_catalogue
from db.session import make_engine, session_scope
from db.tables import Product
from services.catalogue import models_catalogue
from services.catalogue_vectors import embed_into_catalogue
from services.review import fix_label
from tests.app.test_app import PAGES, open_page
from tests.helpers import as_without_pgvector, generated_catalogue, use_home


@pytest.fixture
def postgres_home(postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = postgres_server.new_database()
    engine = make_engine(url)
    import_catalogue(generated_catalogue(tmp_path / "source", per_class=4), engine=engine, media_dir=tmp_path / "images")
    engine.dispose()
    use_home(monkeypatch, tmp_path, database_url=url)
    return url


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_on_postgresql(postgres_home: str, page: str) -> None:
    app = open_page(page)
    assert app.title and not app.error


def test_keyword_search_on_postgresql(postgres_home: str) -> None:
    app = open_page("pages/search.py")
    app.text_input(key="search_query").input("pram pushchair").run()
    assert not app.exception and not app.error
    captions = [caption.value for caption in app.caption]
    assert any(caption.startswith("1 results in") for caption in captions), captions  # the one product with both words
    assert "Baby \\& Kids Stuff / Other" in captions and any("**pram**" in caption for caption in captions)


def test_a_label_fixed_by_another_instance_shows_on_the_next_page_run(postgres_home: str) -> None:
    app = open_page("pages/browse.py")
    app.selectbox(key="browse_top").set_value("Appliances").run()
    assert "4 products" in app.caption[0].value

    other_instance = make_engine(postgres_home)  # e.g. the HTTP API, or another reviewer's app
    with session_scope(other_instance) as session:
        version = session.scalar(select(Product.label_version).where(Product.id == "appl0"))
    assert version is not None
    fix_label(other_instance, "appl0", new_category="Baby & Kids Stuff", changed_by="api:alice", seen_version=version)
    other_instance.dispose()

    app.run()
    assert not app.exception and "3 products" in app.caption[0].value


def test_search_by_meaning_without_pgvector_says_it_runs_in_memory(postgres_home: str, tmp_path: Path) -> None:
    engine = make_engine(postgres_home)
    as_without_pgvector(engine)
    settings = get_settings()
    embed_into_catalogue(engine, models_catalogue(engine, settings=settings), cache_dir=settings.cache_dir)
    engine.dispose()
    app = open_page("pages/search.py")
    app.get("segmented_control")[0].set_value("semantic").run()
    app.text_input(key="search_query").input("a pushchair for my toddler").run()
    assert not app.exception and not app.error
    captions = [caption.value for caption in app.caption]
    assert any(caption.endswith("ms)") and " results in " in caption and not caption.startswith("0 ") for caption in captions), captions
    assert any("runs in memory, exact: the server has no pgvector extension" in caption for caption in captions)
