"""Search and page benchmark: query times of every search mode over the catalogue, exact vector
search over 100k and 1M synthetic vectors, and each page's first render with models cached.

    python -m benchmarks.bench_search [--repeat N] [--synthetic 100000 1000000]

Runs on the catalogue in the configured database (import one first); query embeddings are
computed before timing, so the figures are the search itself, as the issue's target states.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from benchmarks.common import print_table, time_calls
from core.data.images import open_image
from core.search.indexes import build_search_indexes, query_text_embedding
from core.search.vector_index import ExactIndex
from core.settings import PROJECT_ROOT, get_settings
from db.keyword_search import keyword_search
from db.queries import ProductFilters, catalogue_counts, filtered_product_ids, training_catalogue
from db.session import make_engine, session_scope
from services.search import search_catalogue

QUERIES = [
    "iphone 12",
    "oak dining table",
    "something to sit on in the garden",
    "baby clothes 6 months",
    "electric drill",
    "ps4 with controllers",
    "leather sofa",
    "kids bike",
    "office chair",
    "sewing machine",
]
PAGES = [
    "pages/search.py",
    "pages/browse.py",
    "pages/classify.py",
    "pages/dashboard.py",
    "pages/evaluation.py",
    "pages/training.py",
    "pages/review.py",
    "pages/admin.py",
]


def vector_query_times(indexes, session, *, repeat: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    text_vectors = [query_text_embedding(query) for query in QUERIES]
    catalogue_photos = [image for image in training_catalogue(session, media_dir=get_settings().media_dir).images[::997]][:10]
    photo_vectors = [indexes.photo_query([open_image(image.path)]) for image in catalogue_photos]
    rows = []
    for name, index, vectors in (("semantic", indexes.text, text_vectors), ("photo", indexes.photos, photo_vectors)):
        position = iter(range(10**9))
        timing = time_calls(lambda: index.search(vectors[next(position) % len(vectors)], k=24), repeat=repeat)
        rows.append(
            (
                f"{name} search over {len(index):,} vectors ({index.dim}-d), query only",
                f"p50 {timing['p50_ms']:.2f} ms, p95 {timing['p95_ms']:.2f} ms",
            )
        )
    filters = ProductFilters(category="Home & Garden", max_price=100)
    position = iter(range(10**9))
    timing = time_calls(
        lambda: indexes.text.search(text_vectors[next(position) % 10], k=24, allowed=filtered_product_ids(session, filters)), repeat=repeat
    )
    rows.append(("semantic search + category and price filters", f"p50 {timing['p50_ms']:.2f} ms, p95 {timing['p95_ms']:.2f} ms"))
    position = iter(range(10**9))
    timing = time_calls(lambda: keyword_search(session, QUERIES[next(position) % 10], limit=24), repeat=repeat)
    rows.append(("keyword search (FTS5)", f"p50 {timing['p50_ms']:.2f} ms, p95 {timing['p95_ms']:.2f} ms"))
    for mode in ("hybrid", "semantic"):
        position = iter(range(10**9))
        embeds: list[float] = []

        def one(mode: str = mode) -> None:
            result = search_catalogue(session, mode=mode, query=QUERIES[next(position) % 10], indexes=indexes, limit=24)
            embeds.append(result.embed_ms)

        timing = time_calls(one, repeat=repeat)
        rows.append(
            (
                f"{mode} search end to end (embed query + search + load hits)",
                f"p50 {timing['p50_ms']:.1f} ms, p95 {timing['p95_ms']:.1f} ms (embedding: median {np.median(embeds):.1f} ms)",
            )
        )
    photo_image = open_image(catalogue_photos[0].path)
    timing = time_calls(
        lambda: search_catalogue(session, mode="photo", photos=[photo_image], indexes=indexes, limit=24), repeat=max(10, repeat // 5)
    )
    rows.append(
        ("photo search end to end (embed photo + search + load hits)", f"p50 {timing['p50_ms']:.1f} ms, p95 {timing['p95_ms']:.1f} ms")
    )
    return rows


def synthetic_times(sizes: list[int], *, repeat: int) -> list[tuple[str, str]]:
    rows = []
    generator = np.random.default_rng(0)
    for size in sizes:
        vectors = generator.standard_normal((size, 384), dtype=np.float32)
        index = ExactIndex([str(row) for row in range(size)], vectors)
        del vectors
        queries = generator.standard_normal((16, 384), dtype=np.float32)
        position = iter(range(10**9))
        timing = time_calls(lambda: index.search(queries[next(position) % 16], k=24), repeat=repeat)
        rows.append(
            (
                f"exact search over {size:,} synthetic 384-d vectors",
                f"p50 {timing['p50_ms']:.1f} ms, p95 {timing['p95_ms']:.1f} ms ({index.vectors.nbytes / 1e6:,.0f} MB)",
            )
        )
    return rows


def page_render_times() -> list[tuple[str, str]]:
    """First render of each page in a new session, after one warm-up render has filled the caches."""
    from streamlit.testing.v1 import AppTest

    def render(page: str) -> float:
        """Seconds for the page's script to run to its end in a new session (server side, no browser)."""
        app = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=600)
        if page != "pages/search.py":
            app.run()  # the entry opens the default page (Search) first
            app.switch_page(page)
        started = time.perf_counter()
        app.run()
        assert not app.exception, [error.value for error in app.exception]
        return time.perf_counter() - started

    for page in PAGES:  # warm-up: models, embeddings, held-out evaluation
        render(page)
    return [(f"first render of {page} (new session, caches warm)", f"{render(page):.2f} s") for page in PAGES]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--synthetic", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--no-pages", action="store_true", help="skip the page render timings")
    args = parser.parse_args()
    torch.set_num_threads(2)
    settings = get_settings()
    engine = make_engine(settings.database_url)
    with session_scope(engine) as session:
        products, images = catalogue_counts(session)
        if not products:
            raise SystemExit("the catalogue is empty: python -m core import ../shared/data/marketplace")
        catalogue = training_catalogue(session, media_dir=settings.media_dir)
        started = time.perf_counter()
        indexes = build_search_indexes(catalogue, cache_dir=settings.cache_dir)
        rows = [
            (
                f"load the vector indexes ({products:,} products, {images:,} photos; embeddings cached)",
                f"{time.perf_counter() - started:.1f} s",
            )
        ]
        rows += vector_query_times(indexes, session, repeat=args.repeat)
    rows += synthetic_times(args.synthetic, repeat=max(20, args.repeat // 5))
    if not args.no_pages:
        rows += page_render_times()
    rows.append(("peak memory of this process", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"))
    print_table(rows)


if __name__ == "__main__":
    main()
