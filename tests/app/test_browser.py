"""End to end in a real browser: `streamlit run` on 127.0.0.1, driven by Debian's headless Chromium
through Playwright. Opens every page, classifies an uploaded photo, searches, clicks a
confusion-matrix cell. Screenshots go to test-artifacts/.

Needs /usr/bin/chromium and the playwright package (never `playwright install`: it downloads
browsers). Where either is missing the tests skip; with MARKETPLACE_REQUIRE_BROWSER=1 (set by
.ci/run) they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.common import serve_app
from core.settings import PROJECT_ROOT
from tests.helpers import ImportedCatalogue

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER_FLAG = "MARKETPLACE_REQUIRE_BROWSER"
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 180_000  # first renders load models and embeddings on 2 cores


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed"
    if missing is None and not CHROMIUM.is_file():
        missing = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if missing:
        if os.environ.get(REQUIRE_BROWSER_FLAG) == "1":
            pytest.fail(f"{missing}; {REQUIRE_BROWSER_FLAG}=1 requires it")
        pytest.skip(missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def app_url(shared_catalogue: ImportedCatalogue, shared_indexes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app on the shared catalogue (embeddings already cached in its home)."""
    with serve_app(shared_catalogue.home, shared_catalogue.database_url, tmp_path_factory.mktemp("streamlit") / "server.log") as server:
        yield server.url


@pytest.fixture
def page(browser, app_url: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.goto(app_url)
    tab.get_by_role("heading", name="Search", level=1).wait_for()
    yield tab
    context.close()


def screenshot(tab, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_page(tab, title: str) -> None:  # type: ignore[no-untyped-def]
    tab.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    headings = {"Import": "Import a catalogue", "Classify": "Classify a listing"}
    tab.get_by_role("heading", name=headings.get(title, title), level=1).wait_for()


SHORTCUT_SETTLE_MS = 1500


def wait_until_idle(tab) -> None:  # type: ignore[no-untyped-def]
    """Until the app's script has finished its run and the buttons' keyboard shortcuts are live:
    Streamlit registers them a moment after drawing the buttons (a key pressed earlier was lost in
    about half of 10 tries here; after this settle, none of 5)."""
    tab.wait_for_function("document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'")
    tab.wait_for_timeout(SHORTCUT_SETTLE_MS)


def no_exception(tab) -> None:  # type: ignore[no-untyped-def]
    assert tab.get_by_test_id("stException").count() == 0, tab.get_by_test_id("stException").first.inner_text()


# What each page shows once it has rendered in full (before moving on, so no render overlaps the next).
RENDERED = {
    "Search": "Type words to search",
    "Browse": "products · page 1 of",
    "Classify": "Upload a photo or type a title",
    "Dashboard": "accuracy per category",
    "Evaluation": "Click a cell to list its items",
    "Training": "Active models for Classify",
    "Import": "Catalogue folder",
    "Review": "The review queue is empty",
}


def test_every_page_opens(page) -> None:  # type: ignore[no-untyped-def]
    for title, marker in RENDERED.items():
        open_page(page, title)
        page.get_by_text(marker).first.wait_for()
        no_exception(page)
        screenshot(page, f"page-{title.lower()}")
    open_page(page, "Dashboard")
    page.get_by_text(RENDERED["Dashboard"]).first.wait_for()
    assert page.get_by_test_id("stMetricValue").first.inner_text() == "6,082"


def test_search_shows_results(page) -> None:  # type: ignore[no-untyped-def]
    box = page.get_by_label("Search the catalogue")
    box.fill("iphone")
    box.press("Enter")
    page.get_by_text("24 results in").wait_for()
    details = page.get_by_role("button", name="Details")
    details.nth(23).wait_for()  # the gallery streams in after the caption
    no_exception(page)
    assert details.count() == 24
    categories = page.get_by_test_id("stCaptionContainer").all_inner_texts()
    assert sum(text.startswith("Phones, Mobile Phones & Telecoms") for text in categories) >= 18, categories
    page.get_by_role("radio", name="Meaning", exact=True).click()  # the segmented control's options are radios
    page.get_by_text("query embedded in").wait_for()
    page.get_by_role("button", name="Details").nth(23).wait_for()
    no_exception(page)
    screenshot(page, "search-meaning")


def test_classify_an_uploaded_photo(page, marketplace_dir: Path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    products = pd.read_csv(marketplace_dir / "Products.csv", lineterminator="\n")
    images = pd.read_csv(marketplace_dir / "Images.csv", lineterminator="\n")
    sofa = products[products["product_name"].str.lower().str.contains("sofa") & products["category"].str.startswith("Home & Garden")]
    photo = next(marketplace_dir / "images" / f"{image_id}.jpg" for image_id in images[images["product_id"].isin(sofa["id"])]["id"])
    open_page(page, "Classify")
    page.locator("input[type=file]").first.set_input_files(str(photo))
    page.get_by_text("Predicted category").wait_for()
    page.get_by_role("button", name="Details").nth(7).wait_for()  # the 8 similar items
    no_exception(page)
    assert page.get_by_test_id("stMetricValue").first.inner_text() == "Home & Garden"
    page.get_by_text("Most similar catalogue items").wait_for()
    screenshot(page, "classify")


def test_click_a_confusion_matrix_cell(page) -> None:  # type: ignore[no-untyped-def]
    open_page(page, "Evaluation")
    page.get_by_text(RENDERED["Evaluation"]).wait_for()
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for()
    points = chart.locator(".scatterlayer .point")
    assert points.count() == 13 * 13
    points.nth(0).click(force=True)  # top-left: Appliances predicted as Appliances
    page.get_by_text("items of Appliances correctly classified").wait_for()
    page.get_by_role("button", name="Open").first.wait_for()
    no_exception(page)
    assert page.get_by_text("confidence").count() >= 1
    screenshot(page, "evaluation-cell")


def test_keyboard_driven_review(page, shared_catalogue: ImportedCatalogue) -> None:  # type: ignore[no-untyped-def]
    """Three shared products queued through the review API; K keeps the first, the next appears, U undoes."""
    from sqlalchemy import select

    from db.session import session_scope
    from db.tables import Product, ReviewItem
    from services import review_queue

    with session_scope(shared_catalogue.engine) as session:
        products = session.scalars(select(Product).order_by(Product.pk).limit(3)).all()
        entries = [
            review_queue.QueueEntry(
                product.id,
                0.01 * (rank + 1),
                product.category.path.split(" / ")[0],
                "Other Goods",
                [("Other Goods", 0.9), (product.category.path.split(" / ")[0], 0.05)],
                False,
                "evaluation",
            )
            for rank, product in enumerate(products)
        ]
        names = [product.name for product in products]
    review_queue.add_to_queue(shared_catalogue.engine, entries)
    try:
        open_page(page, "Review")
        page.get_by_text("Give your name above to start reviewing").wait_for()
        name = page.get_by_label("Your name (recorded with every change)")
        name.fill("e2e reviewer")
        name.press("Enter")
        try:
            page.get_by_role("heading", name=names[0]).wait_for()
        finally:
            screenshot(page, "review-first-item")
        page.get_by_text("Keys: K keep").wait_for()  # drawn after the buttons: their shortcuts are live
        wait_until_idle(page)
        page.evaluate("document.activeElement.blur()")  # out of the text box: keys go to the page's shortcuts
        page.keyboard.press("K")
        page.get_by_role("heading", name=names[1]).wait_for()
        no_exception(page)
        with session_scope(shared_catalogue.engine) as session:
            item = session.get_one(ReviewItem, products[0].id)
            assert (item.status, item.reviewed_by) == ("kept", "e2e reviewer")
        screenshot(page, "review-keyboard")
        page.get_by_text("Keys: K keep").wait_for()
        wait_until_idle(page)
        page.evaluate("document.activeElement.blur()")
        page.keyboard.press("U")
        page.get_by_role("heading", name=names[0]).wait_for()
        with session_scope(shared_catalogue.engine) as session:
            assert session.get_one(ReviewItem, products[0].id).status == review_queue.PENDING
    finally:
        with session_scope(shared_catalogue.engine) as session:  # leave the shared catalogue as the other tests expect it
            for entry in entries:
                session.delete(session.get_one(ReviewItem, entry.product_id))


@pytest.fixture(scope="module")
def markup_app_url(browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app over a small catalogue whose names, descriptions and locations are HTML, scripts and javascript: links."""
    from db.importer import import_catalogue
    from db.session import make_engine
    from tests.hostile import write_markup_catalogue

    home = tmp_path_factory.mktemp("markup_home")
    database_url = f"sqlite:///{home / 'catalogue.db'}"
    import_catalogue(write_markup_catalogue(home / "source"), engine=make_engine(database_url), media_dir=home / "images")
    with serve_app(home, database_url, home / "server.log") as server:
        yield server.url


def test_markup_in_listings_stays_text_in_the_browser(browser, markup_app_url: str) -> None:  # type: ignore[no-untyped-def]
    """What a seller typed is shown literally: no element, script, handler or javascript: link comes alive."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    def assert_inert(name: str) -> None:
        main = tab.get_by_test_id("stMain")
        no_exception(tab)
        assert main.locator("script, style, iframe, img[src='x']").count() == 0
        assert main.locator("[data-testid=stMarkdownContainer] b").count() == 0  # raw <b> never rendered (Markdown bold is <strong>)
        assert tab.locator("a[href^='javascript' i]").count() == 0
        assert dialogs == []
        screenshot(tab, name)

    try:
        tab.goto(f"{markup_app_url}/browse")
        tab.get_by_text("4 products · page 1 of 1").wait_for()
        tab.get_by_role("button", name="Details").nth(3).wait_for()
        assert tab.get_by_text("<script>alert('xss')</script> sofa", exact=False).count() >= 1  # shown, literally
        assert tab.get_by_text("[cheap sofa](javascript:alert(document.cookie))", exact=False).count() >= 1
        assert_inert("markup-browse")
        for product_id in ("h0", "h1", "h2"):
            tab.goto(f"{markup_app_url}/browse?product={product_id}")
            tab.get_by_text(f"Listing id {product_id}").wait_for()
            assert_inert(f"markup-detail-{product_id}")
        assert tab.get_by_role("heading", name="[cheap sofa](javascript:alert(document.cookie))", exact=False).count() == 1
    finally:
        context.close()
