"""Several reviewers on one catalogue at once, on SQLite and on PostgreSQL: 8 processes make 500 label changes on a dozen
overlapping products (queue decisions, undos and fixes by hand, racing on purpose). Every change
either lands exactly once, in both the label and the history, or is refused as stale; nothing is
lost, nothing is written twice, and the database is never reported locked. Instances starting together on an empty database take
turns creating the schema."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select, text

from db.importer import import_catalogue
from db.session import SQLITE_BUSY_TIMEOUT_MS, make_engine, session_scope
from db.tables import Category, LabelHistory, Product, ReviewItem
from services.review_queue import QueueEntry, add_to_queue
from tests.helpers import product_row, write_catalogue

REVIEWERS = 8
CHANGES = 500
PRODUCTS = 12
INSTANCES = 15
CATEGORIES = ["Home & Garden / Other", "Appliances / Other", "Music, Films, Books & Games / Other", "Office Furniture & Equipment / Other"]


def _reviewer(database_url: str, reviewer: str, attempts: int, seed: int) -> list[tuple[str, str, str]]:
    """One reviewer's session in its own process: (product, action, outcome) per attempted change,
    outcome landed | stale | refused (a rule, e.g. nothing to undo), or an unexpected error."""
    from services.review import ReviewError, StaleLabelError, decide, fix_label, undo_last

    engine = make_engine(database_url, create_schema=False)
    rng = random.Random(seed)
    outcomes: list[tuple[str, str, str]] = []
    for _ in range(attempts):
        product_id = f"p{rng.randrange(PRODUCTS)}"
        with session_scope(engine) as session:  # what the reviewer's screen shows
            product = session.scalar(select(Product).where(Product.id == product_id))
            seen_version, current = product.label_version, product.category.path
        time.sleep(rng.uniform(0, 0.004))  # the reviewer reads; others write meanwhile
        action = rng.choices(["fix", "decide", "undo"], weights=[6, 3, 1])[0]
        target = rng.choice([category for category in CATEGORIES if category != current])
        try:
            if action == "fix":
                fix_label(engine, product_id, new_category=target, changed_by=reviewer, seen_version=seen_version)
            elif action == "decide":
                decide(engine, product_id, action="relabel", reviewer=reviewer, seen_version=seen_version, new_category=target)
            else:
                product_id = undo_last(engine, reviewer) or "-"
                if product_id == "-":
                    outcomes.append((product_id, action, "refused"))
                    continue
            outcomes.append((product_id, action, "landed"))
        except StaleLabelError:
            outcomes.append((product_id, action, "stale"))
        except ReviewError:
            outcomes.append((product_id, action, "refused"))
        except Exception as error:  # noqa: BLE001 - reported to the test, which fails on any
            outcomes.append((product_id, action, f"error: {type(error).__name__}: {error}"))
    engine.dispose()
    return outcomes


@pytest.mark.slow
def test_eight_reviewers_race_on_the_same_labels(tmp_path: Path, catalogue_url: str) -> None:
    products = [product_row(f"p{index}", category=CATEGORIES[index % len(CATEGORIES)]) for index in range(PRODUCTS)]
    database_url = catalogue_url
    engine = make_engine(database_url)
    import_catalogue(write_catalogue(tmp_path / "source", products, []), engine=engine, media_dir=tmp_path / "media")
    add_to_queue(engine, [QueueEntry(f"p{index}", 0.1, "x", "y", [("y", 0.9)], True, "cross-validation") for index in range(PRODUCTS)])
    with session_scope(engine) as session:
        initial = {product.id: product.category.path for product in session.scalars(select(Product))}
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS

    shares = [CHANGES // REVIEWERS + (1 if index < CHANGES % REVIEWERS else 0) for index in range(REVIEWERS)]
    with ProcessPoolExecutor(REVIEWERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_reviewer, database_url, f"reviewer{index}", share, index) for index, share in enumerate(shares)]
        outcomes = [outcome for future in futures for outcome in future.result()]

    assert len(outcomes) == CHANGES
    errors = [outcome for outcome in outcomes if outcome[2].startswith("error")]
    assert not errors, errors[:5]  # never "database is locked", never a crash
    counted = Counter(outcome for _, _, outcome in outcomes)
    assert counted["landed"] >= 100 and counted["stale"] >= 10, counted  # real changes, and real races refused

    landed = Counter(product_id for product_id, _, outcome in outcomes if outcome == "landed")
    with session_scope(engine) as session:
        categories = {category.id: category.path for category in session.scalars(select(Category))}
        history: dict[str, list[LabelHistory]] = defaultdict(list)
        for row in session.scalars(select(LabelHistory).where(LabelHistory.source.in_(["review", "manual"])).order_by(LabelHistory.id)):
            history[row.product_id].append(row)
        for product in session.scalars(select(Product)):
            rows = history[product.id]
            # Each landed change bumped the version once and wrote exactly one history row.
            assert product.label_version == 1 + landed[product.id], product.id
            assert len(rows) == landed[product.id], product.id
            # No lost update: every change starts from the label the previous one left.
            chain = [initial[product.id]] + [categories[row.new_category_id] for row in rows]
            assert [categories[row.old_category_id] for row in rows] == chain[:-1], product.id
            assert product.category.path == chain[-1]
        items = {item.product_id: item for item in session.scalars(select(ReviewItem))}
        for product_id, item in items.items():
            if item.status == "relabelled":
                assert item.history_id in {row.id for row in history[product_id]}


def _start_instance(database_url: str) -> str:
    """What an app, API or CLI process does first: connect, creating or upgrading the schema."""
    try:
        engine = make_engine(database_url)
        with session_scope(engine) as session:
            session.scalar(select(Product.id).limit(1))
        engine.dispose()
        return "ok"
    except Exception as error:  # noqa: BLE001 - reported to the test, which fails on any
        return f"{type(error).__name__}: {error}"


@pytest.mark.slow
def test_instances_starting_at_once_on_an_empty_database_all_start(catalogue_url: str) -> None:
    with ProcessPoolExecutor(INSTANCES, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = list(pool.map(_start_instance, [catalogue_url] * INSTANCES))
    assert outcomes == ["ok"] * INSTANCES
