"""Hostile and broken input, tried on purpose: uploads (corrupt, truncated, renamed, empty, bombs,
oversized, and unusual-but-valid formats), free text in every search box and in Classify, markup in
catalogue text (shown as text everywhere, never as live HTML or links), import paths that try to
leave the images folder, and damaged model files. Each refusal is asserted to be explained, and
nothing valid to be lost."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from cli.main import main
from core.data.cleaning import model_text
from core.data.images import open_image
from core.data.markdown import escape_markdown
from core.data.uploads import read_uploaded_photos
from core.inference.category_classifier import NothingToClassify
from core.search.keyword_query import query_terms
from core.settings import PROJECT_ROOT
from db.importer import import_catalogue
from db.queries import ProductFilters
from db.session import make_engine, session_scope
from db.tables import Image as ImageRow
from db.tables import Product
from services.review_queue import QueueEntry, add_to_queue
from services.search import SearchInputError, search_catalogue
from tests.helpers import ImportedCatalogue, image_row, photo, product_row, row_counts, use_home, write_catalogue
from tests.hostile import HOSTILE_TEXTS, HOSTILE_UPLOADS, HostileUpload, is_top_of_a_distribution, jpeg_bytes, write_markup_catalogue

APP = str(PROJECT_ROOT / "streamlit_app.py")

# Markup that would be live if it reached Streamlit's Markdown unescaped: an HTML tag or a link.
LIVE_MARKUP = re.compile(r"(?<!\\)<\s*/?\s*(script|img|style|a|b)\b|(?<!\\)\]\(\s*javascript", re.IGNORECASE)


def rendered_markdown(app: AppTest) -> list[str]:
    """Every element whose text Streamlit renders as Markdown."""
    elements = [*app.markdown, *app.caption, *app.title, *app.header, *app.subheader, *app.error, *app.warning, *app.info, *app.success]
    return [str(element.value) for element in elements]


def assert_no_live_markup(app: AppTest) -> None:
    live = [value for value in rendered_markdown(app) if LIVE_MARKUP.search(value)]
    assert not live, live


# ----- uploads


@pytest.mark.parametrize("case", HOSTILE_UPLOADS, ids=lambda case: case.name)
def test_each_hostile_upload_is_refused_with_its_reason_or_used(case: HostileUpload) -> None:
    good = jpeg_bytes()
    read = read_uploaded_photos([("before.jpg", good), (case.name, case.make()), ("after.jpg", good)])
    if case.refusal:
        assert [name for name, _ in read.files] == ["before.jpg", "after.jpg"] and len(read.photos) == 2  # nothing else lost
        assert len(read.problems) == 1
        assert read.problems[0].startswith(f"{case.name}:") and case.refusal in read.problems[0]
    else:
        assert read.problems == []
        assert [photo.size for photo in read.photos] == [(96, 64), case.size, (96, 64)]
        assert all(photo.mode == "RGB" for photo in read.photos)


def test_unusual_but_valid_photos_are_classified(shipped_classifier) -> None:  # type: ignore[no-untyped-def]
    for case in HOSTILE_UPLOADS:
        if case.refusal is None:
            prediction = shipped_classifier.classify(images=[open_image(case.make(), name=case.name)])
            assert prediction.model == "image" and len(prediction.top) == 5
            assert is_top_of_a_distribution(prediction.top)


def test_every_hostile_upload_at_once_on_the_classify_page(app_home: Path) -> None:
    """All of them in one upload on the Classify page (no catalogue needed): each refused file named
    with its reason, the usable ones classified together, no exception."""
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    app.switch_page("pages/classify.py").run()
    app.file_uploader(key="classify_photos").set_value([(case.name, case.make(), "image/jpeg") for case in HOSTILE_UPLOADS[:8]])
    app.run()
    assert not app.exception, [error.value for error in app.exception]
    errors = [error.value.replace("\\", "") for error in app.error]  # shown escaped: compare the plain text
    refused = [case for case in HOSTILE_UPLOADS[:8] if case.refusal]
    assert len(errors) == len(refused)
    for case, error in zip(refused, errors):
        assert error.startswith(f"Photo not used: {case.name}:") and case.refusal in error  # type: ignore[operator]
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Predicted category"] and any("**image** model" in markdown.value for markdown in app.markdown)


@pytest.mark.parametrize("case", [case for case in HOSTILE_UPLOADS if case.refusal and case.name != "huge.jpg"], ids=lambda case: case.name)
def test_classify_cli_refuses_each_broken_photo_in_one_line(
    case: HostileUpload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / case.name
    path.write_bytes(case.make())
    assert main(["classify", "--image", str(path), "--text", "a sofa"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and case.name in lines[0] and case.refusal in lines[0]  # type: ignore[operator]


def test_a_hostile_photo_in_an_upload_saves_nothing(tmp_path: Path) -> None:
    """Adding a listing with one refused photo among good ones: the whole listing is refused, nothing written."""
    from decimal import Decimal

    from core.data.images import ImageError
    from services.listings import NewListing, UploadedPhoto, add_listing

    engine = make_engine(f"sqlite:///{tmp_path / 'catalogue.db'}")
    import_catalogue(write_catalogue(tmp_path / "source", [product_row("a")], []), engine=engine, media_dir=tmp_path / "media")
    for case in HOSTILE_UPLOADS:
        if case.refusal and case.name != "huge.jpg":
            listing = NewListing(
                name="Garden bench",
                description="",
                price=Decimal("20"),
                location="Leeds",
                category="Home & Garden",
                photos=[UploadedPhoto("good.jpg", jpeg_bytes()), UploadedPhoto(case.name, case.make())],
            )
            with pytest.raises(ImageError, match=re.escape(case.name)):
                add_listing(engine, listing, media_dir=tmp_path / "media", added_by="ana")
    assert row_counts(engine) == (1, 0, 0)
    assert not any((tmp_path / "media").rglob("*.jpg"))


# ----- free text


@pytest.mark.parametrize("name", list(HOSTILE_TEXTS))
def test_hostile_text_in_every_search_mode_and_in_classify(
    name: str,
    shared_catalogue: ImportedCatalogue,
    shared_indexes,  # type: ignore[no-untyped-def]
    shipped_classifier,
) -> None:
    text = HOSTILE_TEXTS[name]
    with session_scope(shared_catalogue.engine) as session:
        before = session.scalar(select(func.count()).select_from(Product))
        for mode in ("keyword", "semantic", "hybrid"):
            if not query_terms(text):
                with pytest.raises(SearchInputError, match="type some words"):
                    search_catalogue(session, mode=mode, query=text, indexes=shared_indexes)
                continue
            result = search_catalogue(session, mode=mode, query=text, indexes=shared_indexes, limit=5)
            assert len(result.hits) <= 5
            if mode != "keyword":
                assert len(result.hits) == 5  # meaning search always finds the closest items
        # The location filter is a search box too: matched literally (LIKE wildcards escaped).
        filtered = search_catalogue(
            session, mode="keyword", query="sofa", filters=ProductFilters(location=text[:100] or None), indexes=shared_indexes
        )
        assert all(text[:100].strip().lower() in hit.product.location.lower() for hit in filtered.hits)
        assert session.scalar(select(func.count()).select_from(Product)) == before
    if model_text("", text):
        prediction = shipped_classifier.classify(text=text)
        assert prediction.model == "text" and prediction.category in shipped_classifier.labels
    else:
        with pytest.raises(NothingToClassify):
            shipped_classifier.classify(text=text)


def test_hostile_text_in_the_app_search_and_classify_boxes(
    shared_catalogue: ImportedCatalogue,
    shared_indexes,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_home(monkeypatch, shared_catalogue.home, database_url=shared_catalogue.database_url)
    search = AppTest.from_file(APP, default_timeout=120)
    search.run()
    classify = AppTest.from_file(APP, default_timeout=120)
    classify.run()
    classify.switch_page("pages/classify.py").run()
    for name, text in HOSTILE_TEXTS.items():
        for mode in ("keyword", "semantic", "hybrid"):
            search.button_group(key="search_mode").set_value(mode)
            search.text_input(key="search_query").set_value(text[:500]).run()
            assert not search.exception, (name, mode, [error.value for error in search.exception])
            assert_no_live_markup(search)
            captions = " ".join(caption.value for caption in search.caption)
            infos = " ".join(info.value for info in search.info)
            assert "results in" in captions or "Type words to search" in captions or "Type some words" in infos, (
                name,
                mode,
                captions,
                infos,
            )
        search.text_input(key="search_location").set_value(text[:100]).run()
        assert not search.exception, (name, [error.value for error in search.exception])
        search.text_input(key="search_location").set_value("").run()

        classify.text_input(key="classify_title").set_value(text[:200])
        classify.text_area(key="classify_description").set_value(text[:5000]).run()
        assert not classify.exception, (name, [error.value for error in classify.exception])
        assert_no_live_markup(classify)
        if model_text(text[:200], text[:5000]):
            assert classify.metric[0].label == "Predicted category", name
        else:
            assert "Upload a photo or type a title" in classify.info[0].value, name


def test_hostile_folder_paths_on_the_import_page_are_refused(app_home: Path) -> None:
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    app.switch_page("pages/admin.py").run()
    for name, text in HOSTILE_TEXTS.items():
        app.text_input[0].set_value(text[:1000])
        app.button[0].click().run()
        assert not app.exception, (name, [error.value for error in app.exception])
        assert app.error and app.error[0].value.startswith("Nothing was imported"), name
        assert_no_live_markup(app)
    with session_scope(make_engine(f"sqlite:///{app_home / 'catalogue.db'}")) as session:
        assert session.scalar(select(func.count()).select_from(Product)) == 0


# ----- markup in catalogue text


@pytest.fixture
def hostile_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small catalogue whose names, descriptions and locations are markup, with one product queued for review."""
    source = write_markup_catalogue(tmp_path / "source")
    use_home(monkeypatch, tmp_path / "home")
    engine = make_engine(f"sqlite:///{tmp_path / 'home' / 'catalogue.db'}")
    import_catalogue(source, engine=engine, media_dir=tmp_path / "home" / "images")
    add_to_queue(
        engine,
        [QueueEntry("h0", 0.01, "Home & Garden", "Music, Films, Books & Games", [("Music, Films, Books & Games", 0.9)], True, "upload")],
    )
    return tmp_path


def _names(engine_url: str) -> list[str]:
    with session_scope(make_engine(engine_url)) as session:
        return list(session.scalars(select(Product.name).order_by(Product.id)))


def test_markup_in_listings_is_shown_as_text_on_every_page(hostile_catalogue: Path) -> None:
    names = _names(os.environ["DATABASE_URL"])
    assert any("<script>" in name for name in names) and any("javascript:" in name for name in names)  # kept as typed

    browse = AppTest.from_file(APP, default_timeout=120)
    browse.run()
    browse.switch_page("pages/browse.py").run()
    assert not browse.exception
    assert_no_live_markup(browse)
    shown = " ".join(rendered_markdown(browse))
    assert all(escape_markdown(name) in shown for name in names)  # every name visible, as text

    search = AppTest.from_file(APP, default_timeout=120)
    search.run()
    search.text_input(key="search_query").set_value("sofa script javascript").run()
    assert not search.exception
    assert "results in" in " ".join(caption.value for caption in search.caption)
    assert_no_live_markup(search)

    for product_id in ("h0", "h1", "h2"):
        detail = AppTest.from_file(APP, default_timeout=120)
        detail.query_params["product"] = product_id
        detail.run()
        assert not detail.exception
        assert_no_live_markup(detail)
        assert detail.subheader and detail.text  # the name as a heading, the description as plain text

    review = AppTest.from_file(APP, default_timeout=120)
    review.run()
    review.switch_page("pages/review.py").run()
    review.text_input(key="reviewer_name").set_value("<b>ana</b> [me](javascript:alert(1))").run()
    assert not review.exception
    assert_no_live_markup(review)
    assert review.subheader and escape_markdown(names[0]) in review.subheader[0].value


# ----- import paths


@pytest.mark.parametrize("image_id", ["../outside", "..", "a/b", "a\\b", "/etc/passwd", "C:evil", "~root", ".hidden", "a b"])
def test_image_ids_never_reach_outside_the_images_folder(tmp_path: Path, image_id: str) -> None:
    (tmp_path / "outside.jpg").write_bytes(jpeg_bytes())
    source = write_catalogue(
        tmp_path / "source", [product_row("p1")], [image_row(image_id, "p1"), image_row("ok", "p1")], photos={"ok": photo()}
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'catalogue.db'}")
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert [(row.row_id, row.reason.split(":")[0]) for row in report.skipped] == [(image_id, "bad image id")]
    assert report.images_added == 1
    written = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file() and "source" not in path.parts)
    assert [path for path in written if not path.startswith(("media/", "catalogue.db"))] == ["outside.jpg"]


def test_a_photo_that_links_out_of_the_images_folder_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg_bytes())
    source = write_catalogue(tmp_path / "source", [product_row("p1")], [image_row("link", "p1")])
    (source / "images" / "link.jpg").symlink_to(secret)
    engine = make_engine(f"sqlite:///{tmp_path / 'catalogue.db'}")
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert report.images_added == 0 and report.skipped[0].reason.startswith("image file missing")
    assert not any((tmp_path / "media").rglob("*.jpg"))


def test_an_image_listed_twice_is_imported_once(tmp_path: Path) -> None:
    source = write_catalogue(
        tmp_path / "source",
        [product_row("p1"), product_row("p2")],
        [image_row("i1", "p1"), image_row("i1", "p1"), image_row("i1", "p2")],
        photos={"i1": photo()},
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'catalogue.db'}")
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert report.images_added == 1
    assert [row.reason for row in report.skipped] == ["duplicate image id: the first row with this id was kept"] * 2
    with session_scope(engine) as session:
        assert list(session.execute(select(ImageRow.id, ImageRow.product_id))) == [("i1", "p1")]


# ----- damaged model files


def _damaged_models(tmp_path: Path, damage: str) -> Path:
    models = tmp_path / "models"
    shutil.copytree(PROJECT_ROOT / "models", models)
    target = models / "combined.pt"
    if damage == "missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "changed":  # still a loadable file, but not the one shipped
        shutil.copyfile(models / "text.pt", target)
    elif damage == "not a model":
        target.write_text("<html>404 not found</html>")
    elif damage == "manifest":
        (models / "manifest.json").write_text("{ not json")
    return models


DAMAGES = ["missing", "truncated", "changed", "not a model", "manifest"]
DAMAGE_MESSAGES = {
    "missing": "model file not found",
    "truncated": "checksum differs",
    "changed": "checksum differs",
    "not a model": "checksum differs",
    "manifest": "not a readable manifest",
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_model_file_is_one_clear_line_in_the_cli(tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    models = _damaged_models(tmp_path, damage)
    assert main(["classify", "--text", "a sofa", "--models", str(models)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and DAMAGE_MESSAGES[damage] in lines[0], lines
    assert main(["evaluate", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out.json"), "--models", str(models)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_model_file_is_a_clear_message_in_the_app(tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_catalogue(tmp_path / "source", [product_row("a")], [image_row("ia", "a")], photos={"ia": photo()})
    use_home(monkeypatch, tmp_path / "home")
    import_catalogue(source, engine=make_engine(os.environ["DATABASE_URL"]), media_dir=tmp_path / "home" / "images")
    monkeypatch.setenv("MARKETPLACE_MODELS", str(_damaged_models(tmp_path, damage)))
    for page in ("pages/classify.py", "pages/evaluation.py", "pages/dashboard.py"):
        app = AppTest.from_file(APP, default_timeout=120)
        app.run()
        app.switch_page(page).run()
        assert not app.exception, (page, [error.value for error in app.exception])
        errors = " ".join(error.value for error in app.error).replace("\\", "")  # shown escaped: compare the plain text
        assert "models could not be loaded" in errors and "combined.pt" in errors and DAMAGE_MESSAGES[damage] in errors, (page, errors)


def test_the_shipped_manifest_matches_the_shipped_files() -> None:
    import hashlib

    manifest = json.loads((PROJECT_ROOT / "models" / "manifest.json").read_text())
    for entry in manifest["models"].values():
        assert hashlib.sha256((PROJECT_ROOT / "models" / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
