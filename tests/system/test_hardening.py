"""Classes of defect an outside attempt to break the product found, each tried on many generated
instances: damaged photo metadata, hostile CSV fields, inputs past the limits, category paths with
a slash inside a level, two imports at once, and error output that must stay one safe line."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from cli.main import main
from core.data.cleaning import split_category
from core.data.images import ImageError, open_image
from core.data.uploads import read_uploaded_photos
from core.settings import PROJECT_ROOT
from db.importer import import_catalogue
from db.session import make_engine, session_scope
from db.tables import Category, Product
from tests.helpers import image_row, photo, product_row, row_counts, write_catalogue
from tests.hostile import damaged_metadata_photo, hostile_field, jpeg_bytes, orientation_with_a_text_tag


def run_cli(*arguments: str, environment: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core", *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(environment or {})},
    )


# ----- 1. one damaged photo is that photo's refusal, named; the rest goes on


def test_damaged_metadata_is_a_named_refusal_or_a_photo(tmp_path: Path) -> None:
    rng = random.Random(13)
    refused = 0
    for index in range(400):
        name = f"photo{index}.jpg"
        try:
            image = open_image(damaged_metadata_photo(rng), name=name)
        except ImageError as error:
            assert str(error).startswith(f"{name}: "), error
            refused += 1
        else:
            assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    assert refused  # the generator does reach Pillow's failures


def test_the_photo_with_a_text_tag_is_refused_and_the_good_one_kept(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"^exif\.jpg: unreadable photo metadata"):
        open_image(orientation_with_a_text_tag(), name="exif.jpg")
    read = read_uploaded_photos([("exif.jpg", orientation_with_a_text_tag()), ("good.jpg", jpeg_bytes())])
    assert len(read.photos) == 1 and read.files[0][0] == "good.jpg" and read.problems[0].startswith("exif.jpg: ")


def test_the_classify_page_names_the_damaged_photo_and_classifies_the_good_one(app_home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=120)
    app.run()
    app.switch_page("pages/classify.py").run()
    app.file_uploader(key="classify_photos").set_value(
        [("exif.jpg", orientation_with_a_text_tag(), "image/jpeg"), ("good.jpg", jpeg_bytes(), "image/jpeg")]
    ).run()
    assert not app.exception, [error.value for error in app.exception]
    errors = [error.value.replace("\\", "") for error in app.error]
    assert len(errors) == 1 and errors[0].startswith("Photo not used: exif.jpg: unreadable photo metadata")
    assert {metric.label: metric.value for metric in app.metric}["Predicted category"]


def _catalogue_with_a_damaged_photo(folder: Path) -> Path:
    products = [product_row(product_id) for product_id in ("a", "b", "c")]
    images = [image_row(f"i{product_id}", product_id) for product_id in ("a", "b", "c")]
    write_catalogue(folder, products, images, photos={"ia": photo(), "ic": photo((20, 200, 20))})
    (folder / "images" / "ib.jpg").write_bytes(orientation_with_a_text_tag())
    return folder


def test_import_skips_the_damaged_photo_by_name_and_keeps_the_rest(tmp_path: Path) -> None:
    source = _catalogue_with_a_damaged_photo(tmp_path / "source")
    engine = make_engine(f"sqlite:///{tmp_path / 'catalogue.db'}")
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert report.products_added == 3 and report.images_added == 2
    (skipped,) = report.skipped
    assert skipped.row_id == "ib" and skipped.reason.startswith("image unreadable: ib.jpg: unreadable photo metadata")
    assert sorted(path.name for path in (tmp_path / "media").rglob("*.jpg")) == ["ia.jpg", "ic.jpg"]


@pytest.mark.slow
def test_evaluate_names_the_damaged_photo_and_evaluates_the_rest(tmp_path: Path) -> None:
    source = _catalogue_with_a_damaged_photo(tmp_path / "source")
    result = run_cli("evaluate", "--data", str(source), "--out", str(tmp_path / "metrics.json"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "skipped photo ib.jpg: unreadable photo metadata" in result.stdout
    import json

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["image"]["n"] == 2 and metrics["text"]["n"] == 3 and len(metrics["skipped_photos"]) == 1


@pytest.mark.parametrize("command", [["classify"], ["search"]])
def test_classify_and_photo_search_name_the_damaged_photo(app_home: Path, tmp_path: Path, command: list[str]) -> None:
    damaged = tmp_path / "exif.jpg"
    damaged.write_bytes(orientation_with_a_text_tag())
    result = run_cli(*command, "--image", str(damaged), environment={"MARKETPLACE_HOME": str(app_home)})
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "exif.jpg: unreadable photo metadata" in result.stderr


# ----- 2. one bad row never stops an import


def test_hostile_fields_are_skipped_row_by_row(tmp_path: Path) -> None:
    rng = random.Random(7)
    good = [product_row(f"good{index}") for index in range(60)]
    hostile = []
    for index in range(120):
        column = rng.choice(["product_name", "category", "product_description", "price", "location"])
        hostile.append(product_row(f"bad{index}", **{column: hostile_field(rng, column)}))
    rows = good + hostile
    rng.shuffle(rows)
    source = write_catalogue(tmp_path / "source", rows, [])
    engine = make_engine(f"sqlite:///{tmp_path / 'catalogue.db'}")
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    skipped = {row.row_id for row in report.skipped}
    with session_scope(engine) as session:
        stored = set(session.scalars(select(Product.id)))
    assert {row["id"] for row in good} <= stored  # every good row is in
    assert stored | skipped == {row["id"] for row in rows} and not stored & skipped  # every row is in or explained
    assert report.products_added == len(stored)
    assert all(row.reason for row in report.skipped)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("price", "£99999999999999999999", "bad price: over the limit of £100,000,000"),
        ("category", " / ".join(f"level{index}" for index in range(1000)), "category too deep: 1,000 levels, the limit is 8"),
        ("category", "A / " + "x" * 1000, "category level too long: 1,000 characters, the limit is 200"),
        ("product_name", "x" * 2000, "name too long: 2,000 characters, the limit is 500"),
    ],
)
def test_the_found_rows_are_skipped_with_their_reason(tmp_path: Path, column: str, value: str, reason: str) -> None:
    source = write_catalogue(tmp_path / "source", [product_row("ok"), product_row("bad", **{column: value})], [])
    engine = make_engine(f"sqlite:///{tmp_path / 'catalogue.db'}")
    report = import_catalogue(source, engine=engine, media_dir=tmp_path / "media")
    assert report.products_added == 1
    assert [(row.row_id, row.reason) for row in report.skipped] == [("bad", reason)]


# ----- 3. limits outside the app


def test_classify_refuses_more_photos_than_the_app_takes(app_home: Path, tmp_path: Path) -> None:
    paths = []
    for index in range(9):
        paths += ["--image", str(tmp_path / f"p{index}.jpg")]
        (tmp_path / f"p{index}.jpg").write_bytes(jpeg_bytes())
    result = run_cli("classify", *paths)
    assert result.returncode == 1 and result.stderr.strip() == "error: at most 8 photos per listing (9 given)"


@pytest.mark.slow
def test_classify_refuses_a_fifo_and_a_huge_file_without_reading_them(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result = run_cli("classify", "--image", str(fifo), timeout=60)  # reading a FIFO would hang until the timeout
    assert result.returncode == 1 and "pipe.jpg: not a regular file" in result.stderr
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as sparse:
        sparse.truncate(1536 * 1024 * 1024)  # 1.5 GB on paper, no disk used
    result = run_cli("classify", "--image", str(huge), timeout=60)
    assert result.returncode == 1 and "huge.jpg: 1536.0 MB is over the 10 MB limit per photo" in result.stderr


def test_an_oversized_photo_in_an_import_is_skipped_before_reading(tmp_path: Path) -> None:
    source = write_catalogue(tmp_path / "source", [product_row("a")], [image_row("ia", "a")])
    with open(source / "images" / "ia.jpg", "wb") as sparse:
        sparse.truncate(2 * 1024**3)
    report = import_catalogue(source, engine=make_engine(f"sqlite:///{tmp_path / 'c.db'}"), media_dir=tmp_path / "media")
    assert report.products_added == 1 and report.images_added == 0
    assert report.skipped[0].reason == "image unreadable: ia.jpg: 2048.0 MB is over the 50 MB limit per photo"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["search", "x", "--limit", "99999999999999999999"], "must be between 1 and 1000"),
        (["search", "x", "--max-price", "£99999999999999999999"], "over the limit of £100,000,000"),
        # 12,000 distinct words (a command-line argument holds at most 128 KB; in-process, 40,000 were refused as fast)
        (["search", " ".join(f"w{index}" for index in range(12_000))], "the query is 72,889 characters long; the limit is 1,000"),
        (["classify", "--text", "sofa " * 10_000], "the text is 50,000 characters long; the limit is 20,000"),
        (["review-queue", "--limit", "10000000000000000000000"], "must be between 1 and 100000"),
    ],
)
def test_options_past_their_limits_are_one_line(app_home: Path, arguments: list[str], message: str) -> None:
    result = run_cli(*arguments, timeout=60)
    assert result.returncode in (1, 2), result.stderr  # 2: argparse's own refusal, after its usage line
    assert message in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr


def test_query_terms_stop_at_the_limit() -> None:
    from core.search.keyword_query import MAX_QUERY_TERMS, query_terms

    words = [f"w{index}" for index in range(40_000)]
    assert query_terms(" ".join(words)) == words[:MAX_QUERY_TERMS]
    assert query_terms("b a B c a") == ["b", "a", "c"]


# ----- 4. category paths split on the separator only


def test_a_slash_inside_a_level_is_part_of_its_name() -> None:
    assert split_category("Music, Films, Books & Games / Music / Ham/Amateur Radios") == [
        "Music, Films, Books & Games",
        "Music",
        "Ham/Amateur Radios",
    ]
    assert split_category(" A  /  B / ") == ["A", "B"]
    assert split_category("A/B") == ["A/B"]


def test_the_shared_category_tree_is_exactly_what_its_paths_describe(shared_catalogue, marketplace_dir: Path) -> None:  # type: ignore[no-untyped-def]
    paths = pd.read_csv(marketplace_dir / "Products.csv", lineterminator="\n")["category"].dropna()
    nodes = {
        " / ".join(parts[:depth])
        for path in paths
        for parts in [[part.strip() for part in path.split(" / ")]]
        for depth in range(1, len(parts) + 1)
    }
    with session_scope(shared_catalogue.engine) as session:
        stored = set(session.scalars(select(Category.path)))
    assert stored == nodes
    assert not any(part.startswith("Ham") and part.endswith("Ham") for path in stored for part in path.split(" / "))


# ----- 5. two imports at once


def test_two_imports_at_once_both_finish_with_the_same_counts(tmp_path: Path) -> None:
    products = [product_row(f"p{index}") for index in range(150)]
    images = [image_row(f"i{index}", f"p{index}") for index in range(150)]
    source = write_catalogue(tmp_path / "source", products, images, photos={f"i{index}": photo((index, 80, 80)) for index in range(150)})
    environment = {"MARKETPLACE_HOME": str(tmp_path / "home"), "DATABASE_URL": f"sqlite:///{tmp_path / 'home' / 'catalogue.db'}"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "core", "import", str(source), "--quiet"],
            cwd=PROJECT_ROOT,
            env={**os.environ, **environment},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outcomes
    assert row_counts(make_engine(environment["DATABASE_URL"]))[:2] == (150, 150)


# ----- 6. error output


def test_control_characters_in_file_names_are_escaped(tmp_path: Path) -> None:
    name = "fake\x1b[2J\rOK: all good\x07.jpg"
    (tmp_path / name).write_bytes(b"not a photo")
    result = run_cli("classify", "--image", str(tmp_path / name))
    assert result.returncode == 1
    assert "\x1b" not in result.stderr and "\r" not in result.stderr and "\x07" not in result.stderr
    assert "fake\\x1b[2J\\rOK: all good\\x07.jpg" in result.stderr


def test_a_database_that_cannot_be_written_is_one_line_and_leaves_no_photo(tmp_path: Path) -> None:
    source = write_catalogue(tmp_path / "source", [product_row("a")], [image_row("ia", "a")], photos={"ia": photo()})
    database = tmp_path / "home" / "catalogue.db"
    make_engine(f"sqlite:///{database}").dispose()  # the schema exists; the file is then opened read-only
    environment = {"MARKETPLACE_HOME": str(tmp_path / "home"), "DATABASE_URL": f"sqlite:///file:{database}?mode=ro&uri=true"}
    result = run_cli("import", str(source), "--quiet", environment=environment)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "[SQL" not in result.stderr and "parameters" not in result.stderr
    assert "could not be written" in result.stderr
    assert not list((tmp_path / "home" / "images").rglob("*.jpg"))
    with session_scope(make_engine(f"sqlite:///{database}")) as session:
        assert session.scalar(select(func.count()).select_from(Product)) == 0


def test_generated_file_names_never_reach_the_terminal_raw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import unicodedata

    rng = random.Random(5)
    specials = "\x00\x07\x08\x1b\r\t\x7f\x85\u2028\u202e\u2066\u200b\ufeff"
    for index in range(60):
        name = "".join(rng.choice(specials + "abc[];:") for _ in range(rng.randint(1, 12))).replace("\x00", "") + f"{index}.jpg"
        path = tmp_path / name
        path.write_bytes(rng.randbytes(rng.randint(0, 64)))
        assert main(["classify", "--image", str(path)]) == 1
        error = capsys.readouterr().err
        assert error.endswith("\n") and error.count("\n") == 1
        assert not [c for c in error[:-1] if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")], repr(error)
