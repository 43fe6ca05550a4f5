"""`python -m core ...`: import a catalogue, search it. Errors are one line, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from core.settings import get_settings


class CommandError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def _engine(database_url: str | None):  # type: ignore[no-untyped-def]
    from db.session import make_engine

    return make_engine(database_url or get_settings().database_url)


def _tqdm_progress():  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit=" rows" if stage == "products" else " photos")
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def run_import(args: argparse.Namespace) -> int:
    from db.importer import CatalogueFormatError, import_catalogue

    settings = get_settings()
    try:
        report = import_catalogue(
            Path(args.directory),
            engine=_engine(args.db),
            media_dir=settings.media_dir,
            image_size=args.image_size or settings.image_size,
            progress=None if args.quiet else _tqdm_progress(),
        )
    except CatalogueFormatError as error:
        raise CommandError(str(error)) from error
    print(report.summary())
    for row in report.skipped[: args.show_skipped]:
        where = f"{row.file}:{row.line}" if row.line else row.file
        print(f"skipped {where} {row.row_id or '-'}: {row.reason}")
    if len(report.skipped) > args.show_skipped:
        print(f"... and {len(report.skipped) - args.show_skipped} more skipped rows")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from db.queries import ProductFilters, keyword_search
    from db.session import session_scope

    filters = ProductFilters(
        category=args.category, min_price=args.min_price, max_price=args.max_price, location=args.location
    )
    with session_scope(_engine(args.db)) as session:
        result = keyword_search(session, args.query, filters=filters, limit=args.limit)
        hits = [
            {
                "id": hit.product.id,
                "name": hit.product.name,
                "category": hit.category,
                "price": float(hit.product.price),
                "score": round(hit.score, 4),
            }
            for hit in result.hits
        ]
    if args.json:
        print(json.dumps({"hits": hits, "took_ms": round(result.took_ms, 3)}, ensure_ascii=False))
        return 0
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank:>3}. {hit['score']:7.2f}  £{hit['price']:>10,.2f}  {hit['name']}  [{hit['category']}]")
    print(f"{len(hits)} hits in {result.took_ms:.1f} ms" + (" (matching any word)" if result.matched_any_term else ""))
    return 0


def _price(text: str) -> Decimal:
    from core.cleaning import parse_price

    try:
        return parse_price(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Marketplace browser command line.")
    commands = parser.add_subparsers(dest="command", required=True)

    importer = commands.add_parser("import", help="import a catalogue folder (Products.csv, Images.csv, images/)")
    importer.add_argument("directory", help="folder in the seed format, e.g. ../shared/data/marketplace")
    importer.add_argument("--db", help="database URL (default: DATABASE_URL or data/catalogue.db)")
    importer.add_argument("--image-size", type=_positive_int, help="canvas size of cleaned photos (default 512)")
    importer.add_argument("--show-skipped", type=int, default=20, help="how many skipped rows to list")
    importer.add_argument("--quiet", action="store_true", help="no progress bars")
    importer.set_defaults(handler=run_import)

    search = commands.add_parser("search", help="keyword search over the catalogue")
    search.add_argument("query")
    search.add_argument("--category", help="top-level category or deeper path")
    search.add_argument("--min-price", type=_price)
    search.add_argument("--max-price", type=_price)
    search.add_argument("--location", help="substring of the location")
    search.add_argument("--limit", type=_positive_int, default=20)
    search.add_argument("--json", action="store_true", help='print {"hits": [...], "took_ms": N}')
    search.add_argument("--db", help="database URL")
    search.set_defaults(handler=run_search)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI promises one line, not a traceback
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
