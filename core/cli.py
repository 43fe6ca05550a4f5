"""`python -m core ...`: import a catalogue, search it. Errors are one line, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from core.settings import get_settings
from core.terminal import printable

MAX_QUERY_CHARS = 1_000
MAX_TEXT_CHARS = 20_000  # a listing's title and description
MAX_LIMIT = 1_000


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
    from db.importer import CatalogueFormatError, CatalogueWriteError, import_catalogue

    settings = get_settings()
    try:
        report = import_catalogue(
            Path(args.directory),
            engine=_engine(args.db),
            media_dir=settings.media_dir,
            image_size=args.image_size or settings.image_size,
            progress=None if args.quiet else _tqdm_progress(),
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
        from core.search_indexes import embed_catalogue, embedding_progress

        catalogue = _catalogue_to_train_on(_engine(args.db))
        embed_catalogue(catalogue, cache_dir=settings.data_dir / "cache", progress=None if args.quiet else _tqdm_progress())
        print(embedding_progress(catalogue, cache_dir=settings.data_dir / "cache").describe())
    return 0


def run_info(args: argparse.Namespace) -> int:
    from core.machine_info import gather

    settings = get_settings()
    counts = embeddings = None
    try:
        from db.queries import catalogue_counts
        from db.session import session_scope

        engine = _engine(args.db)
        with session_scope(engine) as session:
            counts = catalogue_counts(session)
        if counts[0]:
            from core.search_indexes import embedding_progress

            progress = embedding_progress(_catalogue_to_train_on(engine), cache_dir=settings.data_dir / "cache")
            embeddings = {"texts_done": progress.texts_done, "texts_total": progress.texts_total,
                          "photos_done": progress.photos_done, "photos_total": progress.photos_total}
    except Exception as error:  # noqa: BLE001 - a broken database is part of what info reports
        counts, embeddings = None, {"error": f"{type(error).__name__}: {error}"}
    facts = gather(settings, catalogue_counts=counts, embeddings=embeddings)
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
    from db.queries import ProductFilters
    from db.search import SearchInputError, search_catalogue
    from db.session import session_scope

    filters = ProductFilters(
        category=args.category, min_price=args.min_price, max_price=args.max_price, location=args.location
    )
    mode = "photo" if args.image else args.mode
    if len(args.query or "") > MAX_QUERY_CHARS:
        raise CommandError(f"the query is {len(args.query):,} characters long; the limit is {MAX_QUERY_CHARS:,}")
    photos = [_read_photo(args.image)] if args.image else []
    engine = _engine(args.db)
    indexes = None
    if mode != "keyword":
        from core.search_indexes import build_search_indexes

        catalogue = _catalogue_to_train_on(engine)
        indexes = build_search_indexes(catalogue, cache_dir=get_settings().data_dir / "cache")
    with session_scope(engine) as session:
        try:
            result = search_catalogue(session, mode=mode, query=args.query or "", photos=photos, indexes=indexes, filters=filters,
                                      limit=args.limit)
        except SearchInputError as error:
            raise CommandError(str(error)) from error
        hits = [
            {
                "id": hit.product.id,
                "name": hit.product.name,
                "category": hit.product.category,
                "price": float(hit.product.price),
                "score": round(hit.score, 4),
                "why": hit.why,
            }
            for hit in result.hits
        ]
    if args.json:
        print(json.dumps({"mode": mode, "hits": hits, "took_ms": round(result.took_ms, 3)}, ensure_ascii=False))
        return 0
    for rank, hit in enumerate(hits, start=1):
        print(printable(f"{rank:>3}. {hit['score']:7.3f}  £{hit['price']:>10,.2f}  {hit['name']}  [{hit['category']}]  {hit['why']}"))
    print(f"{len(hits)} {mode} hits in {result.took_ms:.1f} ms" + (" (matching any word)" if result.matched_any_term else ""))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from core.training import DEFAULTS, Trainer, TrainingError, with_overrides

    settings = get_settings()
    engine = _engine(args.db)
    catalogue = _catalogue_to_train_on(engine)
    overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "momentum": args.momentum,
                 "step_size": args.step_size, "gamma": args.gamma, "seed": args.seed, "val_fraction": args.val_fraction,
                 "test_fraction": args.test_fraction, "backbone": args.backbone, "finetune_layers": args.finetune_layers, "finetune_blocks": args.finetune_blocks,
                 "dropout": args.dropout, "weight_decay": args.weight_decay, "text_folds": args.text_folds}
    kinds = ["image", "text", "combined"] if args.model == "all" else [args.model]
    _stop_on_sigterm()
    bars = _EpochBars(quiet=args.quiet)
    trainer = Trainer(catalogue, engine=engine, runs_dir=settings.data_dir / "runs", cache_dir=settings.data_dir / "cache",
                      epoch_progress=bars.update, feature_progress=None if args.quiet else _tqdm_progress())
    results = {}
    try:
        for kind in kinds:
            hyper = with_overrides(DEFAULTS[kind], **overrides)
            bars.start(kind, hyper.epochs)
            print(f"training the {kind} model ({len(catalogue.products)} products, {len(catalogue.images)} photos)")
            if kind == "combined":
                text_checkpoint = (results["text"].checkpoint if "text" in results
                                   else _run_checkpoint(engine, "text", args.text_run) if args.text_run else _latest_checkpoint(engine, "text"))
                results[kind] = trainer.train_combined(text_checkpoint, hyper)
            else:
                results[kind] = getattr(trainer, f"train_{kind}")(hyper)
            bars.close()
            result = results[kind]
            metrics = result.test_metrics
            test = (f"test accuracy {metrics['accuracy']:.3f}, top-3 {metrics['top3_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
                    f"(n={metrics['n']})" if metrics["n"] else "no test products")
            print(f"run {result.run_id} ({kind}): best epoch {result.best_epoch}, validation accuracy {result.best_val_accuracy:.3f}, "
                  f"{test}; checkpoint {result.checkpoint}")
    except TrainingError as error:
        raise CommandError(str(error)) from error
    if args.ship:
        from core.shipping import ship_models

        manifest = ship_models({kind: result.checkpoint for kind, result in results.items()}, settings.shipped_models_dir,
                               catalogue_fingerprint=catalogue.fingerprint())
        _store_held_out(settings.shipped_models_dir, catalogue, quiet=args.quiet)
        print(f"shipped to {settings.shipped_models_dir}: {', '.join(manifest['models'])}")
    return 0


def _load_classifier(models_dir: str | None):  # type: ignore[no-untyped-def]
    from core.classify import CategoryClassifier
    from core.model_io import ModelFileError

    try:
        return CategoryClassifier(Path(models_dir) if models_dir else get_settings().models_dir)
    except ModelFileError as error:
        raise CommandError(str(error)) from error


def run_classify(args: argparse.Namespace) -> int:
    from core.classify import NothingToClassify
    from core.uploads import MAX_PHOTOS

    if not args.image and not (args.text or "").strip():
        raise CommandError("give --image PATH (one or more) and/or --text TEXT")
    if len(args.image or []) > MAX_PHOTOS:
        raise CommandError(f"at most {MAX_PHOTOS} photos per listing ({len(args.image)} given)")
    if len(args.text or "") > MAX_TEXT_CHARS:
        raise CommandError(f"the text is {len(args.text):,} characters long; the limit is {MAX_TEXT_CHARS:,}")
    photos = [_read_photo(path) for path in args.image or []]
    classifier = _load_classifier(args.models)
    try:
        prediction = classifier.classify(images=photos, text=args.text)
    except NothingToClassify as error:
        raise CommandError(str(error)) from error
    print(json.dumps(prediction.as_json(), ensure_ascii=False))
    return 0


def _read_photo(path: str):  # type: ignore[no-untyped-def]
    """A photo named on the command line, with the app's upload limits (a regular file of at most 10 MB)."""
    from core.images import ImageError, open_image
    from core.uploads import MAX_UPLOAD_BYTES

    try:
        return open_image(Path(path), name=path, max_bytes=MAX_UPLOAD_BYTES)
    except ImageError as error:
        raise CommandError(str(error)) from error


def run_evaluate(args: argparse.Namespace) -> int:
    from core.model_evaluation import evaluate_catalogue
    from db.importer import CatalogueFormatError, read_catalogue_folder

    try:
        catalogue, report = read_catalogue_folder(Path(args.data))
    except CatalogueFormatError as error:
        raise CommandError(str(error)) from error
    classifier = _load_classifier(args.models)
    progress = None if args.quiet else _tqdm_progress()
    results = evaluate_catalogue(classifier, catalogue, progress=progress)
    results["skipped_rows"] = len(report.skipped)
    for problem in results["skipped_photos"]:
        print(printable(f"skipped photo {problem}"))
    Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    for kind in ("image", "text", "combined"):
        metrics = results[kind]
        if metrics["n"]:
            print(f"{kind:>8}: accuracy {metrics['accuracy']:.3f}, top-3 {metrics['top3_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} (n={metrics['n']})")
    print(f"written to {args.out}")
    return 0


def run_baselines_command(args: argparse.Namespace) -> int:
    from core.backbones import get_backbone
    from core.baselines import run_baselines
    from core.features import cached_image_features
    from core.splits import split_products
    from db.queries import listings_frame
    from db.session import session_scope

    settings = get_settings()
    engine = _engine(args.db)
    catalogue = _catalogue_to_train_on(engine)
    with session_scope(engine) as session:
        listings = listings_frame(session).set_index("id")
    split = split_products([product.id for product in catalogue.products], [product.label for product in catalogue.products],
                           test_fraction=0.2, val_fraction=0.2, seed=args.seed)
    features = cached_image_features(get_backbone(args.backbone), [image.id for image in catalogue.images],
                                     [image.checksum for image in catalogue.images], [image.path for image in catalogue.images],
                                     cache_dir=settings.data_dir / "cache")
    results = run_baselines(catalogue, split, features, prices=listings["price"].to_dict(), names=listings["name"].to_dict(),
                            descriptions=listings["description"].to_dict(), locations=listings["location"].to_dict())
    text = json.dumps(results, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def run_ship(args: argparse.Namespace) -> int:
    from core.model_io import ModelFileError
    from core.shipping import ship_models

    settings = get_settings()
    engine = _engine(args.db)
    if args.predictions_only:
        _store_held_out(settings.shipped_models_dir, _catalogue_to_train_on(engine), quiet=args.quiet)
        print(f"held-out predictions stored in {settings.shipped_models_dir}")
        return 0
    checkpoints: dict[str, Path] = {}
    for kind in ("image", "text", "combined"):
        run_id = getattr(args, kind)
        checkpoints[kind] = _latest_checkpoint(engine, kind) if run_id is None else _run_checkpoint(engine, kind, run_id)
    catalogue = _catalogue_to_train_on(engine)
    try:
        manifest = ship_models(checkpoints, settings.shipped_models_dir, catalogue_fingerprint=catalogue.fingerprint(), int8=args.int8)
    except ModelFileError as error:
        raise CommandError(str(error)) from error
    _store_held_out(settings.shipped_models_dir, catalogue, quiet=args.quiet)
    for kind, entry in manifest["models"].items():
        accuracy = (entry.get("test_metrics") or {}).get("accuracy")
        print(f"{kind}: run {entry['run_id']}, test accuracy {'n/a' if accuracy is None else f'{accuracy:.3f}'}, {entry['bytes'] / 1e6:.1f} MB")
    return 0


def _store_held_out(models_dir: Path, catalogue, *, quiet: bool) -> None:  # type: ignore[no-untyped-def]
    """The shipped set's predictions on its held-out products, stored beside it: Evaluation and the
    dashboard then draw at once for this catalogue instead of evaluating in the background."""
    from core.held_out import store_held_out_predictions
    from core.model_evaluation import held_out_predictions

    classifier = _load_classifier(str(models_dir))
    predictions = held_out_predictions(classifier, catalogue, cache_dir=get_settings().data_dir / "cache",
                                       progress=None if quiet else _tqdm_progress())
    store_held_out_predictions(models_dir, predictions, catalogue_fingerprint=catalogue.fingerprint())


def run_review_queue(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from db.models import ReviewItem
    from db.review import ReviewError, queue_frame, refresh_queue
    from db.session import session_scope

    settings = get_settings()
    engine = _engine(args.db)
    with session_scope(engine) as session:
        scored = session.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.source == "cross-validation")) or 0
    if args.refresh or not scored:
        _catalogue_to_train_on(engine)  # a clear message on an empty catalogue
        if not args.json:
            print("scoring every label by cross-validation (a minute or two; the first time also embeds the catalogue, a few minutes more)...", file=sys.stderr)
        try:
            refresh_queue(engine, cache_dir=settings.data_dir / "cache", media_dir=settings.media_dir, folds=args.folds)
        except ReviewError as error:
            raise CommandError(str(error)) from error
    queue = queue_frame(engine, limit=args.limit)
    items = [{"product_id": row.product_id, "name": row.name, "current": row.current.split(" / ")[0], "suggested": row.suggested,
              "score": round(float(row.score), 6)} for row in queue.itertuples()]
    if args.json:
        print(json.dumps({"items": items}, ensure_ascii=False))
        return 0
    for rank, item in enumerate(items, start=1):
        print(f"{rank:>4}. {item['score']:.4f}  {item['current']} -> {item['suggested']}  {item['name']}  [{item['product_id']}]")
    print(f"{len(items)} items, worst label first (score: label quality, lower = more likely wrong)")
    return 0


def _catalogue_to_train_on(engine):  # type: ignore[no-untyped-def]
    from db.queries import training_catalogue
    from db.session import session_scope

    with session_scope(engine) as session:
        catalogue = training_catalogue(session, media_dir=get_settings().media_dir)
    if not catalogue.products:
        raise CommandError("the catalogue is empty: import one first (python -m core import DIR)")
    return catalogue


def _run_checkpoint(engine, kind: str, run_id: int) -> Path:  # type: ignore[no-untyped-def]
    from db.models import TrainingRun
    from db.session import session_scope

    with session_scope(engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.model_kind != kind or run.status != "finished" or not run.checkpoint_path:
            raise CommandError(f"run {run_id} is not a finished {kind} run")
        return Path(run.checkpoint_path)


def _latest_checkpoint(engine, kind: str) -> Path:  # type: ignore[no-untyped-def]
    from db.runs import latest_run

    run = latest_run(engine, model_kind=kind)
    if run is None or not run.checkpoint_path:
        raise CommandError(f"no finished {kind} run to build on: train it first (python -m core train --model {kind})")
    return Path(run.checkpoint_path)


def _stop_on_sigterm() -> None:
    """`kill` stops a training run like Ctrl-C does: marked stopped, best checkpoint kept."""
    import signal

    def interrupt(_signal: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


class _EpochBars:
    """A tqdm bar per model over its epochs, showing the latest losses and accuracies."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def start(self, kind: str, epochs: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=epochs, desc=f"{kind} epochs", unit="epoch", disable=self.quiet)

    def update(self, kind: str, result) -> None:  # type: ignore[no-untyped-def]
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{result.train_loss:.3f}", acc=f"{result.train_accuracy:.3f}",
                                 val_loss=f"{result.val_loss:.3f}", val_acc=f"{result.val_accuracy:.3f}")
            self.bar.update(1)
        line = (f"  {kind} epoch {result.epoch}: train loss {result.train_loss:.3f} acc {result.train_accuracy:.3f} | "
                f"val loss {result.val_loss:.3f} acc {result.val_accuracy:.3f} | lr {result.learning_rate:.2g} | {result.seconds:.0f} s")
        (self.bar.write if self.bar is not None and not self.quiet else print)(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _price(text: str) -> Decimal:
    from core.cleaning import parse_price

    try:
        return parse_price(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _bounded(kind: type[int] | type[float], low: float, high: float):  # type: ignore[no-untyped-def]
    """An argparse type: a number of `kind` from `low` to `high` (a 20-digit number or NaN is refused
    with the bounds, never overflowed)."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"not a {noun}: {printable(text[:40])}") from error
        if not low <= value <= high:  # NaN fails this too
            shown = (f"{int(low)} and {int(high)}" if kind is int else f"{low:g} and {high:g}")
            raise argparse.ArgumentTypeError(f"must be between {shown}")
        return value

    return parse


def _bounded_int(low: int, high: int):  # type: ignore[no-untyped-def]
    return _bounded(int, low, high)


def _bounded_float(low: float, high: float):  # type: ignore[no-untyped-def]
    return _bounded(float, low, high)


_positive_int = _bounded_int(1, 100_000)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Marketplace browser command line.")
    commands = parser.add_subparsers(dest="command", required=True)

    importer = commands.add_parser("import", help="import a catalogue folder (Products.csv, Images.csv, images/)")
    importer.add_argument("directory", help="folder in the seed format, e.g. ../shared/data/marketplace")
    importer.add_argument("--db", help="database URL (default: DATABASE_URL or data/catalogue.db)")
    importer.add_argument("--image-size", type=_bounded_int(16, 4096), help="canvas size of cleaned photos (default 512)")
    importer.add_argument("--show-skipped", type=_bounded_int(0, 1_000_000), default=20, help="how many skipped rows to list")
    importer.add_argument("--quiet", action="store_true", help="no progress bars")
    importer.add_argument("--embed", action="store_true",
                          help="then embed the catalogue for search by meaning and photo (resumable; otherwise the app does it in the background)")
    importer.set_defaults(handler=run_import)

    info = commands.add_parser("info", help="this machine and setup (CPU, precision, threads, models, catalogue, caches) for a bug report")
    info.add_argument("--json", action="store_true", help='print {"cpu", "precision", "threads", "torch", "database", "models", "catalogue", "caches", ...}')
    info.add_argument("--db", help="database URL")
    info.set_defaults(handler=run_info)

    search = commands.add_parser("search", help="search the catalogue by keyword, meaning, both (hybrid) or photo")
    search.add_argument("query", nargs="?", default="", help="words to search for (not needed with --image)")
    search.add_argument("--mode", choices=["keyword", "semantic", "hybrid"], default="keyword",
                        help="keyword (FTS5), semantic (sentence embeddings) or hybrid (both, rank-fused); default keyword")
    search.add_argument("--image", metavar="PATH", help="search by this photo (nearest image embeddings) instead of words")
    search.add_argument("--category", help="top-level category or deeper path")
    search.add_argument("--min-price", type=_price)
    search.add_argument("--max-price", type=_price)
    search.add_argument("--location", help="substring of the location")
    search.add_argument("--limit", type=_bounded_int(1, MAX_LIMIT), default=20)
    search.add_argument("--json", action="store_true", help='print {"mode", "hits": [...], "took_ms": N}')
    search.add_argument("--db", help="database URL")
    search.set_defaults(handler=run_search)
    train = commands.add_parser("train", help="train the image, text and/or combined classifier on the catalogue in the DB")
    train.add_argument("--model", choices=["image", "text", "combined", "all"], default="all")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--lr", type=_bounded_float(0, 10), help="learning rate (image SGD 0.002, text Adam 0.001, combined SGD 0.001)")
    train.add_argument("--batch-size", type=_bounded_int(1, 4096))
    train.add_argument("--momentum", type=_bounded_float(0, 1))
    train.add_argument("--step-size", type=_positive_int, help="StepLR step in epochs")
    train.add_argument("--gamma", type=_bounded_float(0, 1), help="StepLR factor")
    train.add_argument("--dropout", type=_bounded_float(0, 0.95))
    train.add_argument("--weight-decay", type=_bounded_float(0, 1))
    train.add_argument("--seed", type=_bounded_int(0, 2**32 - 1), help="split and initialisation seed (default 42)")
    train.add_argument("--val-fraction", type=_bounded_float(0.01, 0.9), help="validation share of the non-test products (default 0.2)")
    train.add_argument("--test-fraction", type=_bounded_float(0.01, 0.9), help="held-out test share of products (default 0.2)")
    train.add_argument("--backbone", help="image backbone: efficientnet-lite0 (default), efficientnet-lite2, resnet50")
    train.add_argument("--finetune-layers", type=_bounded_int(0, 6), help="text: encoder layers fine-tuned with the CNN (default 2)")
    train.add_argument("--finetune-blocks", type=_bounded_int(0, 16), help="image: last backbone blocks fine-tuned with the head (default 0)")
    train.add_argument("--text-run", type=_positive_int, metavar="RUN", help="combined: the text run it builds on (default: the latest)")
    train.add_argument("--text-folds", type=_bounded_int(0, 20), metavar="K",
                       help="combined: read the text model's logits, cross-fitted on the training side by K fold models (default 0: its features)")
    train.add_argument("--ship", action="store_true", help="make the trained models the shipped defaults under models/")
    train.add_argument("--quiet", action="store_true")
    train.add_argument("--db", help="database URL")
    train.set_defaults(handler=run_train)

    ship = commands.add_parser("ship", help="make trained runs the shipped models under models/ (default: latest finished runs)")
    for kind in ("image", "text", "combined"):
        ship.add_argument(f"--{kind}", type=_positive_int, metavar="RUN", help=f"the {kind} run to ship")
    ship.add_argument("--int8", action="store_true", help="store big weight matrices as int8 (a quarter of float32)")
    ship.add_argument("--quiet", action="store_true", help="no progress bars")
    ship.add_argument("--predictions-only", action="store_true",
                      help="only store the shipped set's held-out predictions for the catalogue (a set shipped without them)")
    ship.add_argument("--db", help="database URL")
    ship.set_defaults(handler=run_ship)

    baselines = commands.add_parser("baselines", help="measure the seed's baselines on the held-out test products")
    baselines.add_argument("--seed", type=_bounded_int(0, 2**32 - 1), default=42)
    baselines.add_argument("--backbone", default="efficientnet-lite0")
    baselines.add_argument("--out", help="also write the figures to this JSON file")
    baselines.add_argument("--db", help="database URL")
    baselines.set_defaults(handler=run_baselines_command)

    review = commands.add_parser("review-queue", help="the products most likely mislabelled, worst first (cleanlab on cross-validated probabilities)")
    review.add_argument("--limit", type=_positive_int, default=50)
    review.add_argument("--json", action="store_true", help='print {"items": [{"product_id", "name", "current", "suggested", "score"}, ...]}')
    review.add_argument("--refresh", action="store_true", help="score every label again (after imports or reviews)")
    review.add_argument("--folds", type=_bounded_int(2, 20), default=5, help="cross-validation folds (default 5)")
    review.add_argument("--db", help="database URL")
    review.set_defaults(handler=run_review_queue)

    classify = commands.add_parser("classify", help="predict the category of a listing from photos and/or text")
    classify.add_argument("--image", action="append", metavar="PATH", help="a photo of the item (repeat for several)")
    classify.add_argument("--text", help="title and/or description")
    classify.add_argument("--models", help="folder of models (default: the shipped models/)")
    classify.set_defaults(handler=run_classify)

    evaluate = commands.add_parser("evaluate", help="evaluate the models on a catalogue folder (no database involved)")
    evaluate.add_argument("--data", required=True, help="folder in the seed format")
    evaluate.add_argument("--out", required=True, help="JSON file for the metrics")
    evaluate.add_argument("--models", help="folder of models (default: the shipped models/)")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(handler=run_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CommandError as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI promises one line, not a traceback
        print(f"error: {printable(_one_line(error))}", file=sys.stderr)
        return 1


def _one_line(error: Exception) -> str:
    """A database error without the SQL and row values SQLAlchemy appends; anything else with its type."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(error, DBAPIError):
        return f"the database refused the operation: {error.orig}"
    return f"{type(error).__name__}: {error}"
