"""500 generated hostile inputs through classify (photos and text), search (every mode, with
filters) and import (damaged CSVs, odd fields, damaged photos). For each: no crash, either a
result or a refusal that explains itself, and database rows changed only by what was accepted."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

from core.data.cleaning import model_text
from core.data.uploads import read_uploaded_photos
from core.inference.category_classifier import NothingToClassify
from db.importer import CatalogueFormatError, import_catalogue
from db.queries import ProductFilters
from db.session import make_engine, session_scope
from services.search import SearchInputError, search_catalogue
from tests.helpers import ImportedCatalogue, image_row, product_row, row_counts, write_catalogue
from tests.hostile import is_top_of_a_distribution, mutated_photo, random_text

CASES = 500
KINDS = ("photo", "text", "search", "import")


def _hostile_folder(folder: Path, case: int, rng: random.Random) -> Path:
    """A catalogue folder with one product whose fields are hostile, or whose CSV itself is broken."""
    field = rng.choice(["id", "product_name", "category", "product_description", "price", "location"])
    row = product_row(f"f{case}", **{field: random_text(rng)[: rng.choice([5, 50, 500, 5000])]})
    write_catalogue(folder, [row], [image_row(f"f{case}img", row["id"])], photos={f"f{case}img": mutated_photo(rng)})
    products_csv = folder / "Products.csv"
    damage = rng.choice(["none", "none", "extra line", "garbage", "encoding", "missing column", "quotes", "empty"])
    if damage == "extra line":
        with products_csv.open("a", encoding="utf-8") as handle:
            handle.write(rng.choice(['9,"unterminated,\n', "1,2,3,4,5,6,7,8,9,10,11\n", ",,,\n", "\x00\x01\x02\n"]))
    elif damage == "garbage":
        products_csv.write_bytes(rng.randbytes(rng.randint(0, 3000)))
    elif damage == "encoding":
        products_csv.write_bytes(products_csv.read_text(encoding="utf-8").encode("utf-16"))
    elif damage == "missing column":
        lines = products_csv.read_text(encoding="utf-8").splitlines()
        products_csv.write_text("\n".join([lines[0].replace("category", "categry")] + lines[1:]) + "\n", encoding="utf-8")
    elif damage == "quotes":
        with products_csv.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
            writer.writerow(["", *row])
            writer.writerow([0, *(value.replace("\n", " ") + '"' for value in row.values())])
    elif damage == "empty":
        products_csv.write_bytes(b"")
    return folder


def test_500_hostile_inputs_never_crash_and_every_refusal_is_explained(
    shared_catalogue: ImportedCatalogue,
    shared_indexes,  # type: ignore[no-untyped-def]
    shipped_classifier,
    tmp_path: Path,
) -> None:
    rng = random.Random(20261125)
    shared_before = row_counts(shared_catalogue.engine)
    import_engine = make_engine(f"sqlite:///{tmp_path / 'fuzz.db'}")
    outcomes: Counter[tuple[str, str]] = Counter()
    for case in range(CASES):
        kind = KINDS[case % len(KINDS)]
        if kind == "photo":
            name = f"upload{case}.{rng.choice(['jpg', 'png', 'webp', 'gif'])}"
            read = read_uploaded_photos([(name, mutated_photo(rng))])
            if read.photos:
                prediction = shipped_classifier.classify(images=read.photos)
                assert prediction.category in shipped_classifier.labels and is_top_of_a_distribution(prediction.top)
                outcomes[kind, "accepted"] += 1
            else:
                assert len(read.problems) == 1 and read.problems[0].startswith(f"{name}: ") and len(read.problems[0]) > len(name) + 10
                outcomes[kind, "refused"] += 1
        elif kind == "text":
            text = random_text(rng)
            if model_text("", text):
                prediction = shipped_classifier.classify(text=text)
                assert prediction.model == "text" and is_top_of_a_distribution(prediction.top)
                outcomes[kind, "accepted"] += 1
            else:
                try:
                    shipped_classifier.classify(text=text)
                except NothingToClassify as refusal:
                    assert "give a photo, a description" in str(refusal)
                    outcomes[kind, "refused"] += 1
                else:
                    raise AssertionError(f"no refusal for {text!r}")
        elif kind == "search":
            text = random_text(rng)
            mode = rng.choice(["keyword", "semantic", "hybrid"])
            filters = ProductFilters(
                category=rng.choice([None, "Home & Garden", random_text(rng)[:30]]),
                min_price=rng.choice([None, 0.0, 50.0]),
                location=rng.choice([None, random_text(rng)[:40]]),
            )
            with session_scope(shared_catalogue.engine) as session:
                try:
                    result = search_catalogue(session, mode=mode, query=text, indexes=shared_indexes, filters=filters, limit=10)
                except SearchInputError as refusal:
                    assert "type some words" in str(refusal)
                    outcomes[kind, "refused"] += 1
                else:
                    assert len(result.hits) <= 10 and all(hit.why for hit in result.hits)
                    outcomes[kind, "accepted"] += 1
        else:
            folder = _hostile_folder(tmp_path / f"import{case}", case, rng)
            before = row_counts(import_engine)
            try:
                report = import_catalogue(folder, engine=import_engine, media_dir=tmp_path / "media", workers=1)
            except CatalogueFormatError as refusal:
                assert len(str(refusal)) > 20 and ("Products.csv" in str(refusal) or "Images.csv" in str(refusal))
                assert row_counts(import_engine) == before
                outcomes[kind, "refused"] += 1
                continue
            after = row_counts(import_engine)
            assert after[0] - before[0] == report.products_added and after[1] - before[1] == report.images_added
            assert after[2] == before[2]  # a new product is not a label change
            assert all(row.reason for row in report.skipped)
            if report.products_added == 0:
                assert report.skipped, "a row neither imported nor explained"
            outcomes[kind, "accepted" if report.products_added else "refused"] += 1
    assert row_counts(shared_catalogue.engine) == shared_before  # reading and classifying never write
    assert sum(outcomes.values()) == CASES
    for kind in KINDS:  # the generator reaches both sides of every door
        assert outcomes[kind, "accepted"] > 0 and outcomes[kind, "refused"] > 0, outcomes
