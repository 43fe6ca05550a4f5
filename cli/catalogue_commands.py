"""`import`, `info` and `search`: bringing a catalogue in, what this setup is, and finding listings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.common import MAX_LIMIT, CommandError, bounded_int, catalogue_to_train_on, open_engine, price_argument, read_photo, tqdm_progress
from core.data.uploads import MAX_QUERY_CHARS
from core.runtime.terminal import printable
from core.settings import get_settings


def run_import(args: argparse.Namespace) -> int:
    from services.catalogue import CatalogueFormatError, CatalogueWriteError, import_folder

    settings = get_settings()
    try:
        report = import_folder(
            Path(args.directory),
            engine=open_engine(args.db),
            settings=settings,
            image_size=args.image_size,
            progress=None if args.quiet else tqdm_progress(),
        )
    except (CatalogueFormatError, CatalogueWriteError) as error:
        raise CommandError(str(error)) from error
    for line in report.summary().splitlines():
        print(printable(line))
    for row in report.skipped[: args.show_skipped]:
        where = f"{row.file}:{row.line}" if row.line else row.file
        print(printable(f"skipped {where} {row.row_id or '-'}: {row.reason}"))
    if len(report.skipped) > args.show_skipped:
        print(f"... and {len(report.skipped) - args.show_skipped} more skipped rows")
    if args.embed:
        from services.catalogue import embed_for_search

        print(embed_for_search(open_engine(args.db), settings=settings, progress=None if args.quiet else tqdm_progress()))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from core.runtime.machine_info import gather

    settings = get_settings()
    counts: tuple[int, int] | None = None
    embeddings: dict[str, Any] | None = None
    vector_search: str | None = None
    try:
        from db.queries import catalogue_counts
        from db.session import session_scope

        engine = open_engine(args.db)
        with session_scope(engine) as session:
            counts = catalogue_counts(session)
        if counts[0]:
            from services.catalogue_vectors import catalogue_embedding_progress, vector_search_note

            progress = catalogue_embedding_progress(engine, catalogue_to_train_on(engine), cache_dir=settings.cache_dir)
            embeddings = {
                "texts_done": progress.texts_done,
                "texts_total": progress.texts_total,
                "photos_done": progress.photos_done,
                "photos_total": progress.photos_total,
            }
            vector_search = vector_search_note(engine)
    except Exception as error:  # noqa: BLE001 - a broken database is part of what info reports
        counts, embeddings = None, {"error": f"{type(error).__name__}: {error}"}
    from db.session import database_facts

    database = database_facts(settings.database_url) | ({"vector_search": vector_search} if vector_search else {})
    facts = gather(settings, database=database, catalogue_counts=counts, embeddings=embeddings)
    if args.json:
        print(json.dumps(facts, ensure_ascii=False))
        return 0
    for section, value in facts.items():
        if isinstance(value, dict):
            print(f"{section}:")
            for key, item in value.items():
                print(f"  {key}: {item}")
        else:
            print(f"{section}: {value}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from services.catalogue import ProductFilters
    from services.search import SearchInputError, search

    filters = ProductFilters(category=args.category, min_price=args.min_price, max_price=args.max_price, location=args.location)
    mode = "photo" if args.image else args.mode
    if len(args.query or "") > MAX_QUERY_CHARS:
        raise CommandError(f"the query is {len(args.query):,} characters long; the limit is {MAX_QUERY_CHARS:,}")
    photos = [read_photo(args.image)] if args.image else []
    engine = open_engine(args.db)
    indexes = None
    if mode != "keyword":
        from services.catalogue_vectors import catalogue_indexes

        catalogue = catalogue_to_train_on(engine)
        indexes = catalogue_indexes(engine, catalogue, cache_dir=get_settings().cache_dir)
    try:
        result = search(engine, mode=mode, query=args.query or "", photos=photos, indexes=indexes, filters=filters, limit=args.limit)
    except SearchInputError as error:
        raise CommandError(str(error)) from error
    contract = result.as_json()
    if args.json:
        print(json.dumps(contract, ensure_ascii=False))
        return 0
    hits: list[dict] = contract["hits"]  # type: ignore[assignment]
    for rank, hit in enumerate(hits, start=1):
        print(printable(f"{rank:>3}. {hit['score']:7.3f}  £{hit['price']:>10,.2f}  {hit['name']}  [{hit['category']}]  {hit['why']}"))
    print(f"{len(hits)} {mode} hits in {result.took_ms:.1f} ms" + (" (matching any word)" if result.matched_any_term else ""))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The `import`, `info`, `search` and `migrate` subcommands."""
    importer = commands.add_parser("import", help="import a catalogue folder (Products.csv, Images.csv, images/)")
    importer.add_argument("directory", help="folder in the seed format, e.g. ../shared/data/marketplace")
    importer.add_argument("--db", help="database URL (default: DATABASE_URL or data/catalogue.db)")
    importer.add_argument("--image-size", type=bounded_int(16, 4096), help="canvas size of cleaned photos (default 512)")
    importer.add_argument("--show-skipped", type=bounded_int(0, 1_000_000), default=20, help="how many skipped rows to list")
    importer.add_argument("--quiet", action="store_true", help="no progress bars")
    importer.add_argument(
        "--embed",
        action="store_true",
        help="then embed the catalogue for search by meaning and photo (resumable; otherwise the app does it in the background)",
    )
    importer.set_defaults(handler=run_import)

    info = commands.add_parser("info", help="this machine and setup (CPU, precision, threads, models, catalogue, caches) for a bug report")
    info.add_argument(
        "--json",
        action="store_true",
        help='print {"cpu", "precision", "threads", "torch", "database", "models", "catalogue", "caches", ...}',
    )
    info.add_argument("--db", help="database URL")
    info.set_defaults(handler=run_info)

    search = commands.add_parser("search", help="search the catalogue by keyword, meaning, both (hybrid) or photo")
    search.add_argument("query", nargs="?", default="", help="words to search for (not needed with --image)")
    search.add_argument(
        "--mode",
        choices=["keyword", "semantic", "hybrid"],
        default="keyword",
        help="keyword (full-text), semantic (sentence embeddings) or hybrid (both, rank-fused); default keyword",
    )
    search.add_argument("--image", metavar="PATH", help="search by this photo (nearest image embeddings) instead of words")
    search.add_argument("--category", help="top-level category or deeper path")
    search.add_argument("--min-price", type=price_argument)
    search.add_argument("--max-price", type=price_argument)
    search.add_argument("--location", help="substring of the location")
    search.add_argument("--limit", type=bounded_int(1, MAX_LIMIT), default=20)
    search.add_argument("--json", action="store_true", help='print {"mode", "hits": [...], "took_ms": N}')
    search.add_argument("--db", help="database URL")
    search.set_defaults(handler=run_search)

    migrate = commands.add_parser(
        "migrate", help="copy a catalogue (history, runs, review queue, keys) into an empty database, e.g. SQLite to PostgreSQL"
    )
    migrate.add_argument(
        "--from", dest="source", required=True, metavar="URL", help="the catalogue to copy, e.g. sqlite:///data/catalogue.db"
    )
    migrate.add_argument(
        "--to", dest="target", required=True, metavar="URL", help="an empty database, e.g. postgresql+psycopg://user@host/catalogue"
    )
    migrate.add_argument("--json", action="store_true", help='print {"from", "to", "rows": {table: count}, "seconds"}')
    migrate.set_defaults(handler=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    from db.migrate import MigrationError, migrate_catalogue

    try:
        report = migrate_catalogue(args.source, args.target)
    except MigrationError as error:
        raise CommandError(str(error)) from error
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
        return 0
    print(f"copied {report.source} to {report.target} in {report.seconds:.1f} s; rows checked on both sides:")
    for table, rows in report.rows.items():
        print(f"  {table}: {rows:,}")
    print("search by meaning and photo: the next embedding job stores the vectors (python -m core import --embed, or the app)")
    return 0
