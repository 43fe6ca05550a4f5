"""Catalogue benchmark: import of the shared data set and keyword search latency.

    python -m benchmarks.bench_catalogue [--data DIR]

Each figure is a median over repeated runs on a fresh temporary database.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import print_table, time_calls
from core.data.images import open_image, save_cleaned
from core.settings import get_settings
from db.importer import import_catalogue
from db.keyword_search import keyword_search
from db.queries import ProductFilters
from db.session import make_engine, session_scope

QUERIES = [
    "iphone",
    "sofa",
    "mountain bike",
    "office chair",
    "ps5 console",
    "baby pram",
    "drill",
    "dress size 10",
    "dining table chairs",
    "laptop",
    "gaming pc",
    "fridge freezer",
    "garden furniture",
    "lego",
    "guitar",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=get_settings().marketplace_data)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    seconds = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as folder:
            engine = make_engine(f"sqlite:///{folder}/catalogue.db")
            report = import_catalogue(args.data, engine=engine, media_dir=Path(folder) / "images")
            seconds.append(report.seconds)
            engine.dispose()
    import_seconds = statistics.median(seconds)
    # Reference: the importer's irreducible work alone, reading, decoding, cleaning and writing every
    # photo with the same 4 threads, no CSV parsing and no database.
    photos = sorted((args.data / "images").glob("*.jpg"))
    reference_seconds = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(lambda path: save_cleaned(open_image(path.read_bytes(), name=path.name), Path(folder) / path.name), photos))
            reference_seconds.append(time.perf_counter() - started)
    clean_seconds = statistics.median(reference_seconds)

    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/catalogue.db")
        import_catalogue(args.data, engine=engine, media_dir=Path(folder) / "images")
        reimport = import_catalogue(args.data, engine=engine, media_dir=Path(folder) / "images").seconds
        with session_scope(engine) as session:
            queries = iter(QUERIES * 1000)
            plain = time_calls(lambda: keyword_search(session, next(queries)), repeat=300)
            filtered = time_calls(
                lambda: keyword_search(session, next(queries), filters=ProductFilters(category="Home & Garden", max_price=200)), repeat=300
            )
    print_table(
        [
            (
                "import, fresh DB (median of %d)" % args.runs,
                f"{import_seconds:.1f} s: {report.products_imported / import_seconds:,.0f} products/s, {report.images_imported / import_seconds:,.0f} images/s",
            ),
            (
                "reference: the same photos decoded, cleaned and written, no DB",
                f"{clean_seconds:.1f} s: {len(photos) / clean_seconds:,.0f} images/s",
            ),
            ("re-import, nothing changed", f"{reimport:.1f} s"),
            ("keyword search", f"p50 {plain['p50_ms']:.1f} ms, p95 {plain['p95_ms']:.1f} ms"),
            ("keyword search + filters", f"p50 {filtered['p50_ms']:.1f} ms, p95 {filtered['p95_ms']:.1f} ms"),
        ]
    )


if __name__ == "__main__":
    main()
