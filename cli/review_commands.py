"""`review-queue`: the products most likely mislabelled, worst first."""

from __future__ import annotations

import argparse
import json
import sys

from cli.common import CommandError, bounded_int, catalogue_to_train_on, open_engine, positive_int
from core.settings import get_settings


def run_review_queue(args: argparse.Namespace) -> int:
    from services.review_queue import ReviewError, has_scores, queue_json, refresh_queue

    settings = get_settings()
    engine = open_engine(args.db)
    if args.refresh or not has_scores(engine):
        catalogue_to_train_on(engine)  # a clear message on an empty catalogue
        if not args.json:
            print(
                "scoring every label by cross-validation (a minute or two; the first time also embeds the catalogue, a few minutes more)...",
                file=sys.stderr,
            )
        try:
            refresh_queue(engine, cache_dir=settings.cache_dir, media_dir=settings.media_dir, folds=args.folds)
        except ReviewError as error:
            raise CommandError(str(error)) from error
    contract = queue_json(engine, limit=args.limit)
    if args.json:
        print(json.dumps(contract, ensure_ascii=False))
        return 0
    items = contract["items"]
    for rank, item in enumerate(items, start=1):
        print(f"{rank:>4}. {item['score']:.4f}  {item['current']} -> {item['suggested']}  {item['name']}  [{item['product_id']}]")
    print(f"{len(items)} items, worst label first (score: label quality, lower = more likely wrong)")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The `review-queue` subcommand."""
    review = commands.add_parser(
        "review-queue", help="the products most likely mislabelled, worst first (cleanlab on cross-validated probabilities)"
    )
    review.add_argument("--limit", type=positive_int, default=50)
    review.add_argument(
        "--json", action="store_true", help='print {"items": [{"product_id", "name", "current", "suggested", "score"}, ...]}'
    )
    review.add_argument("--refresh", action="store_true", help="score every label again (after imports or reviews)")
    review.add_argument("--folds", type=bounded_int(2, 20), default=5, help="cross-validation folds (default 5)")
    review.add_argument("--db", help="database URL")
    review.set_defaults(handler=run_review_queue)
