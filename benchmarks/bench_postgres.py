"""PostgreSQL against SQLite, on the shared catalogue and on synthetic catalogues of 100k and 1M listings:

- the import of the shared catalogue into each;
- keyword search p50/p95 with filters on each;
- vector search: pgvector (HNSW, IVFFlat per category) against exact search (recall@10, p50/p95, with and without filters),
  the index build time and sizes;
- 8 concurrent reviewers' label changes per second on each.

    python -m benchmarks.bench_postgres [--sizes 100000 1000000] [--repeat 200] [--skip-import]

PostgreSQL 16 with pgvector 0.6.2 is started from the pgserver wheel in a temporary folder (a Unix
socket; default settings but the memory a server of its own is given, as PostgreSQL's manual advises:
shared_buffers a quarter of RAM, effective_cache_size three quarters, and maintenance_work_mem for the
index builds). The synthetic listings are the shared catalogue's texts and categories repeated, each
text vector its listing's real embedding plus noise, so that vectors cluster as real ones do; queries
are the search benchmark's queries (on the synthetic catalogues, three noisy copies of each).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, select, text

from benchmarks.bench_search import QUERIES
from benchmarks.common import PostgresServer, machine_line, print_table, time_calls
from core.search.indexes import query_text_embedding
from core.search.vector_index import ExactIndex, normalise_rows
from core.settings import get_settings
from db.importer import import_catalogue
from db.keyword_search import keyword_search
from db.queries import ProductFilters, filtered_product_ids, training_catalogue
from db.session import after_bulk_write, make_engine, session_scope
from db.tables import Category, Product
from db.vectors import (
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    IVF_LISTS_PER_ROOT,
    IVF_PROBED_SHARE,
    IVF_PROBED_SHARE_NARROWED,
    StoredVectorIndex,
    ensure_vector_indexes,
    read_vectors,
)
from services.catalogue_vectors import TEXT_SPACE, embed_into_catalogue

FILTERS = {
    "no filter": ProductFilters(),
    "category Appliances": ProductFilters(category="Appliances"),
    "category Home & Garden, under £100": ProductFilters(category="Home & Garden", max_price=100),
}
REVIEWERS, CHANGES_EACH = 8, 60
SYNTHETIC_SPACE = "text:synthetic"
# A synthetic listing is its source listing's embedding moved by noise of this length (cosine 0.78 to its
# source, about 0.6 between two listings made from one source: the spread of a real catalogue's near neighbours).
NOISE = 0.8
QUERY_DRAWS = 3  # noisy copies of each search-benchmark query for the synthetic catalogues
START_DELAY_S = 20  # reviewers start together, once every process has loaded the services


def _ms(timing: dict[str, float]) -> str:
    return f"p50 {timing['p50_ms']:.1f} ms, p95 {timing['p95_ms']:.1f} ms"


def _recall(found: list[str], expected: list[str]) -> float:
    if not expected:  # nothing passes the filters: finding nothing is right
        return float(not found)
    return len(set(found) & set(expected)) / len(expected)


def _keyword_rows(engine: Engine, label: str, *, repeat: int) -> list[tuple[str, str]]:
    rows = []
    with session_scope(engine) as session:
        for name, filters in FILTERS.items():
            position = iter(range(10**9))
            timing = time_calls(
                lambda filters=filters: keyword_search(session, QUERIES[next(position) % 10], filters=filters, limit=24), repeat=repeat
            )
            rows.append((f"{label}: keyword search, {name}", _ms(timing)))
    return rows


def _vector_rows(engine: Engine, space: str, exact: ExactIndex, label: str, *, queries: np.ndarray, repeat: int) -> list[tuple[str, str]]:
    """pgvector in SQL (the space's HNSW graph; a category's IVFFlat index with a category filter; the filters in
    the query) against exact in-memory search over the same vectors."""
    rows = []
    stored = StoredVectorIndex(engine, space, exact.dim)
    with session_scope(engine) as session:
        for name, filters in FILTERS.items():
            allowed = filtered_product_ids(session, filters)
            index = stored.filtered(filters)
            recalls = [
                _recall([n.key for n in index.search(query, k=10)], [n.key for n in exact.search(query, k=10, allowed=allowed)])
                for query in queries
            ]
            position = iter(range(10**9))
            indexed = time_calls(lambda index=index: index.search(queries[next(position) % len(queries)], k=10), repeat=repeat)
            position = iter(range(10**9))
            brute = time_calls(
                lambda filters=filters: exact.search(
                    queries[next(position) % len(queries)], k=10, allowed=filtered_product_ids(session, filters)
                ),
                repeat=max(10, repeat // 4),
            )
            rows.append(
                (
                    f"{label}: vector search, {name}",
                    f"pgvector {_ms(indexed)}, recall@10 {np.mean(recalls):.3f} · exact in memory {_ms(brute)}",
                )
            )
    return rows


def _reviewer(database_url: str, product_ids: list[str], seed: int, start_at: float) -> tuple[int, int, float]:
    """One reviewer's label changes in its own process, from `start_at` (wall clock): (landed, refused as stale, finished at)."""
    from services.review import ReviewError, StaleLabelError, fix_label

    engine = make_engine(database_url, create_schema=False)
    rng = random.Random(seed)
    with session_scope(engine) as session:
        tops = list(session.scalars(select(Category.path).where(Category.depth == 0)))
    time.sleep(max(0.0, start_at - time.time()))
    landed = stale = 0
    for _ in range(CHANGES_EACH):
        product_id = rng.choice(product_ids)
        with session_scope(engine) as session:
            version = session.scalar(select(Product.label_version).where(Product.id == product_id))
        try:
            fix_label(engine, product_id, new_category=rng.choice(tops), changed_by=f"bench{seed}", seen_version=int(version or 1))
            landed += 1
        except StaleLabelError:
            stale += 1
        except ReviewError:  # the label it already has: no change to make
            pass
    finished = time.time()
    engine.dispose()
    return landed, stale, finished


def _reviewers_row(database_url: str, label: str) -> tuple[str, str]:
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        product_ids = list(session.scalars(select(Product.id).order_by(Product.pk).limit(200)))
    engine.dispose()
    start_at = time.time() + START_DELAY_S
    with ProcessPoolExecutor(REVIEWERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        arguments = [database_url] * REVIEWERS, [product_ids] * REVIEWERS, range(REVIEWERS), [start_at] * REVIEWERS
        outcomes = list(pool.map(_reviewer, *arguments))
    seconds = max(finished for _, _, finished in outcomes) - start_at
    landed, stale = sum(outcome[0] for outcome in outcomes), sum(outcome[1] for outcome in outcomes)
    return (
        f"{label}: {REVIEWERS} concurrent reviewers",
        f"{landed / seconds:.1f} label changes/s ({landed} landed, {stale} refused as stale, {seconds:.1f} s)",
    )


def catalogue_rows(server: PostgresServer, scratch: Path, *, repeat: int, skip_import: bool) -> tuple[list[tuple[str, str]], str]:
    """The figures on the shared catalogue, and the URL of its PostgreSQL copy (with its text vectors)."""
    settings = get_settings()
    rows: list[tuple[str, str]] = []
    urls = {"SQLite": f"sqlite:///{scratch / 'bench.db'}", "PostgreSQL": server.new_database()}
    for label, url in urls.items():
        engine = make_engine(url)
        source = settings.marketplace_data
        report = import_catalogue(source, engine=engine, media_dir=scratch / f"images-{label}", workers=2)
        if not skip_import:
            rows.append(
                (
                    f"import of the shared catalogue into {label}",
                    f"{report.seconds:.0f} s ({report.products_added:,} products, {report.images_added:,} photos, photo cleaning included)",
                )
            )
        rows += _keyword_rows(engine, label, repeat=repeat)
    postgres = make_engine(urls["PostgreSQL"])
    with session_scope(postgres) as session:
        catalogue = training_catalogue(session, media_dir=scratch / "images-PostgreSQL")
    embed_into_catalogue(postgres, catalogue, cache_dir=settings.cache_dir)
    exact = ExactIndex(*read_vectors(postgres, TEXT_SPACE, dim=384))
    queries = np.concatenate([query_text_embedding(query) for query in QUERIES])
    rows += _vector_rows(postgres, TEXT_SPACE, exact, "catalogue", queries=queries, repeat=repeat)
    for label, url in urls.items():
        rows.append(_reviewers_row(url, label))
    return rows, urls["PostgreSQL"]


def _copy_synthetic(engine: Engine, source: Engine, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` listings made from the source catalogue's, written with COPY; their text vectors."""
    from pgvector.psycopg import register_vector

    with session_scope(source) as session:
        listings = session.execute(
            select(Product.name, Product.description, Product.location, Product.category_id, Product.id).order_by(Product.pk)
        ).all()
        categories = session.execute(
            select(Category.id, Category.path, Category.name, Category.depth, Category.parent_id).order_by(Category.id)
        ).all()
    base_keys, base_vectors = read_vectors(source, TEXT_SPACE, dim=384)
    vector_of = dict(zip(base_keys, base_vectors))
    picks = rng.integers(0, len(listings), size)
    noise = NOISE / np.sqrt(384) * rng.standard_normal((size, 384), dtype=np.float32)
    vectors = np.stack([vector_of[listings[pick][4]] for pick in picks]) + noise
    vectors = normalise_rows(vectors, in_place=True)
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        register_vector(connection)
        with connection.cursor() as cursor:
            with cursor.copy("COPY categories (id, path, name, depth, parent_id) FROM STDIN") as copy:
                for row in categories:
                    copy.write_row(row)
            columns = "id, name, raw_name, description, raw_description, price_pence, currency, location, category_id, label_version, source, status, created_at"
            with cursor.copy(f"COPY products ({columns}) FROM STDIN") as copy:
                for number, pick in enumerate(picks):
                    name, description, location, category_id, _ = listings[pick]
                    copy.write_row(
                        (
                            f"s{number}",
                            name,
                            name,
                            description,
                            description,
                            int(rng.integers(100, 100_000)),
                            "GBP",
                            location,
                            category_id,
                            1,
                            "import",
                            "active",
                            "2026-01-01",
                        )
                    )
            with cursor.copy(
                "COPY catalogue_vectors (space, item_id, product_id, source_hash, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["varchar", "varchar", "varchar", "varchar", "vector"])
                for number, vector in enumerate(vectors):
                    copy.write_row((SYNTHETIC_SPACE, f"s{number}", f"s{number}", "synthetic", vector))
        connection.commit()
    finally:
        raw.close()
    return vectors


def synthetic_rows(server: PostgresServer, source_url: str, sizes: list[int], *, repeat: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    rng = np.random.default_rng(0)
    source = make_engine(source_url)
    for size in sizes:
        url = server.new_database()
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.execute(text(f"ALTER DATABASE {engine.url.database} SET maintenance_work_mem = '4GB'"))
        engine.dispose()
        started = time.perf_counter()
        vectors = _copy_synthetic(engine, source, size, rng)
        after_bulk_write(engine, ("categories", "products", "catalogue_vectors"))
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        ensure_vector_indexes(engine, SYNTHETIC_SPACE, 384)
        built = time.perf_counter() - started
        with engine.connect() as connection:
            size_of = "SELECT coalesce(sum(pg_relation_size(oid)), 0) FROM pg_class WHERE relkind = 'i' AND relname LIKE :pattern"
            graph_bytes, category_bytes = (
                int(connection.scalar(text(size_of), {"pattern": f"ix_catalogue_vectors_{kind}_%"})) for kind in ("hnsw", "ivf")
            )
        label = f"{size:,} listings"
        rows.append((f"{label}: load (COPY, search vectors and GIN index kept in step)", f"{loaded:.0f} s"))
        rows.append(
            (
                f"{label}: index builds (the space's HNSW graph, m {HNSW_M}, ef_construction {HNSW_EF_CONSTRUCTION}; an IVFFlat index per top-level category)",
                f"{built:.0f} s, graph {graph_bytes / 1e6:,.0f} MB, category indexes {category_bytes / 1e6:,.0f} MB",
            )
        )
        exact = ExactIndex([f"s{number}" for number in range(size)], vectors, take_ownership=True)
        # Each query three times, with noise of its own: recall@10 over ten queries moved by 0.07 between two
        # runs whose only difference was the IVFFlat builds' random samples.
        texts = np.concatenate([query_text_embedding(query) for query in QUERIES])
        queries = normalise_rows(
            np.concatenate([texts + NOISE / np.sqrt(384) * rng.standard_normal(texts.shape, dtype=np.float32) for _ in range(QUERY_DRAWS)])
        )
        rows += _keyword_rows(engine, label, repeat=repeat)
        rows += _vector_rows(engine, SYNTHETIC_SPACE, exact, label, queries=queries, repeat=repeat)
        del exact, vectors
        engine.dispose()
    return rows


def server_settings() -> dict[str, str]:
    """A dedicated server's memory, by the manual's rule of thumb: shared_buffers a quarter of RAM (the
    default 128 MB holds a tenth of a million listings' rows), the planner told of the page cache."""
    ram_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    return {"shared_buffers": f"{ram_mb // 4}MB", "effective_cache_size": f"{ram_mb * 3 // 4}MB"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_postgres")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="synthetic catalogue sizes")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per figure")
    parser.add_argument("--skip-import", action="store_true", help="leave the import times out of the table")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        settings = server_settings()
        server = PostgresServer(scratch / "postgres", settings=settings)
        try:
            print("PostgreSQL:", server.server.psql("SELECT version();").splitlines()[2].strip())
            print("settings:", ", ".join(f"{name} {value}" for name, value in settings.items()))
            print(
                f"HNSW: m {HNSW_M}, ef_construction {HNSW_EF_CONSTRUCTION}, ef_search {HNSW_EF_SEARCH}; per category IVFFlat, lists {IVF_LISTS_PER_ROOT}√rows, "
                f"{IVF_PROBED_SHARE:.1%} probed ({IVF_PROBED_SHARE_NARROWED:.1%} when other filters cut the category)"
            )
            rows, source_url = catalogue_rows(server, scratch, repeat=args.repeat, skip_import=args.skip_import)
            print_table(rows)
            for size in args.sizes:  # each size's table as soon as it is measured: the largest takes longest
                print_table(synthetic_rows(server, source_url, [size], repeat=args.repeat))
                sys.stdout.flush()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
