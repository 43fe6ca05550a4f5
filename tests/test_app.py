"""AppTest for every page: no exception and real content, on an empty and on the full catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.settings import PROJECT_ROOT
from tests.conftest import ImportedCatalogue, image_row, photo, product_row, write_catalogue

APP = str(PROJECT_ROOT / "streamlit_app.py")
PAGES = ["pages/search.py", "pages/browse.py", "pages/dashboard.py", "pages/admin.py"]


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    if page != "pages/search.py":
        app.switch_page(page).run()
    assert not app.exception, [error.value for error in app.exception]
    return app


@pytest.fixture
def shared_app_env(shared_catalogue: ImportedCatalogue, monkeypatch: pytest.MonkeyPatch) -> ImportedCatalogue:
    monkeypatch.setenv("DATABASE_URL", shared_catalogue.database_url)
    monkeypatch.setenv("MARKETPLACE_MEDIA", str(shared_catalogue.home / "images"))
    return shared_catalogue


@pytest.mark.parametrize("page", PAGES[:3])
def test_empty_catalogue_explains_how_to_import(app_home: Path, page: str) -> None:
    app = open_page(page)
    notice = " ".join(info.value for info in app.info)
    assert "catalogue is empty" in notice and "python -m core import" in notice


def test_import_page_imports_a_folder(app_home: Path, tmp_path: Path) -> None:
    source = write_catalogue(tmp_path / "source", [product_row("a"), product_row("b", price="n/a")], [image_row("ia", "a")], photos={"ia": photo()})
    app = open_page("pages/admin.py")
    app.text_input[0].set_value(str(source))
    app.button[0].click().run()
    assert not app.exception
    assert "Imported 1 products and 1 photos" in app.success[0].value
    assert "1 rows were skipped" in app.warning[0].value
    assert app.dataframe[0].value["reason"].str.startswith("bad price").all()

    browse = open_page("pages/browse.py")
    assert "**Item a**" in [markdown.value for markdown in browse.markdown]


def test_import_page_reports_a_bad_folder(app_home: Path) -> None:
    app = open_page("pages/admin.py")
    app.text_input[0].set_value(str(app_home / "no such folder"))
    app.button[0].click().run()
    assert not app.exception
    assert "Nothing was imported" in app.error[0].value


def test_browse_shows_products_and_a_detail_view(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/browse.py")
    assert "6,082 products" in app.caption[0].value
    names = [markdown.value for markdown in app.markdown if markdown.value.startswith("**")]
    assert len(names) == 24
    details = [button for button in app.button if button.key and button.key.startswith("browse_card_")]
    details[0].click().run()
    assert not app.exception
    assert app.subheader[0].value  # the product's name
    assert app.text[0].value  # its full description
    assert app.query_params["product"]

    app.button(key="detail_back").click().run()
    app.selectbox(key="browse_top").set_value("Appliances").run()
    assert "443 products · page 1 of 19" in app.caption[0].value
    app.button(key="browse_next").click().run()
    assert "page 2 of 19" in app.caption[0].value


def test_search_finds_phones(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/search.py")
    app.text_input(key="search_query").input("iphone").run()
    assert not app.exception
    assert app.caption[0].value.startswith("24 results in")
    categories = [caption.value for caption in app.caption if "Telecoms" in caption.value]
    assert len(categories) >= 18


def test_search_with_hostile_text_shows_no_error(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/search.py")
    app.text_input(key="search_query").input('"NEAR( <script>alert(1)</script> AND *').run()
    assert not app.exception and not app.error


def test_dashboard_shows_figures(shared_app_env: ImportedCatalogue) -> None:
    app = open_page("pages/dashboard.py")
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Products"] == "6,082" and metrics["Photos"] == "10,732"
    assert metrics["Products with no photo"] == "83"
    assert len(app.get("plotly_chart")) == 5
    assert len(app.dataframe[0].value) == 83
