"""`train`, `ship` and `baselines`: training the models on the catalogue and releasing them."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import (
    CommandError,
    EpochBars,
    bounded_float,
    bounded_int,
    catalogue_to_train_on,
    latest_checkpoint,
    load_classifier,
    open_engine,
    positive_int,
    run_checkpoint,
    stop_on_sigterm,
    tqdm_progress,
)
from core.enums import ModelKind
from core.settings import get_settings

if TYPE_CHECKING:
    from core.data.catalogue import Catalogue
    from core.training.trainer import RunResult


def run_train(args: argparse.Namespace) -> int:
    from core.models.manifest import ModelFileError
    from core.training.hyperparameters import DEFAULTS, HyperParameters, with_overrides
    from core.training.trainer import Trainer, TrainingError
    from db.runs import DatabaseRunRecorder

    settings = get_settings()
    engine = open_engine(args.db)
    catalogue = catalogue_to_train_on(engine)
    overrides = {field.name: getattr(args, field.name) for field in fields(HyperParameters) if hasattr(args, field.name)}
    kinds = list(ModelKind) if args.model == "all" else [ModelKind(args.model)]
    stop_on_sigterm()
    bars = EpochBars(quiet=args.quiet)
    trainer = Trainer(
        catalogue,
        recorder=DatabaseRunRecorder(engine, root=settings.data_dir),
        runs_dir=settings.runs_dir,
        cache_dir=settings.cache_dir,
        epoch_progress=bars.update,
        feature_progress=None if args.quiet else tqdm_progress(),
    )
    results: dict[str, Any] = {}  # RunResult per kind
    try:
        for kind in kinds:
            hyper = with_overrides(DEFAULTS[kind], **overrides)
            bars.start(kind, hyper.epochs)
            print(f"training the {kind} model ({len(catalogue.products)} products, {len(catalogue.images)} photos)")
            if kind == "combined":
                text_checkpoint = (
                    results["text"].checkpoint
                    if "text" in results
                    else Path(args.text_model)
                    if args.text_model
                    else run_checkpoint(engine, "text", args.text_run)
                    if args.text_run
                    else latest_checkpoint(engine, "text")
                )
                results[kind] = trainer.train_combined(text_checkpoint, hyper)
            else:
                results[kind] = getattr(trainer, f"train_{kind}")(hyper)
            bars.close()
            _print_run(kind, results[kind])
    except (TrainingError, ModelFileError) as error:  # a --text-model file that is missing or not a model
        raise CommandError(str(error)) from error
    if args.ship:
        from core.models.release import ship_models

        manifest = ship_models(
            {kind: result.checkpoint for kind, result in results.items()},
            settings.shipped_models_dir,
            catalogue_fingerprint=catalogue.fingerprint(),
        )
        _calibrate(settings.shipped_models_dir, catalogue, quiet=args.quiet)
        _store_held_out(settings.shipped_models_dir, catalogue, quiet=args.quiet)
        print(f"shipped to {settings.shipped_models_dir}: {', '.join(manifest['models'])}")
    return 0


def _print_run(kind: str, result: RunResult) -> None:
    metrics = result.test_metrics
    test = (
        f"test accuracy {metrics['accuracy']:.3f}, top-3 {metrics['top3_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} (n={metrics['n']})"
        if metrics["n"]
        else "no test products"
    )
    print(
        f"run {result.run_id} ({kind}): best epoch {result.best_epoch}, validation accuracy {result.best_val_accuracy:.3f}, "
        f"{test}; checkpoint {result.checkpoint}"
    )


def run_baselines_command(args: argparse.Namespace) -> int:
    from core.data.splits import split_products
    from core.encoders.backbones import get_backbone
    from core.encoders.features import cached_image_features
    from core.training.baselines import run_baselines
    from db.queries import listings_frame
    from db.session import session_scope

    settings = get_settings()
    engine = open_engine(args.db)
    catalogue = catalogue_to_train_on(engine)
    with session_scope(engine) as session:
        listings = listings_frame(session).set_index("id")
    split = split_products(
        [product.id for product in catalogue.products],
        [product.label for product in catalogue.products],
        test_fraction=0.2,
        val_fraction=0.2,
        seed=args.seed,
    )
    features = cached_image_features(get_backbone(args.backbone), catalogue.images, cache_dir=settings.cache_dir)
    results = run_baselines(
        catalogue,
        split,
        features,
        prices=listings["price"].to_dict(),
        names=listings["name"].to_dict(),
        descriptions=listings["description"].to_dict(),
        locations=listings["location"].to_dict(),
    )
    text = json.dumps(results, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def run_ship(args: argparse.Namespace) -> int:
    from core.models.checkpoints import ModelFileError
    from core.models.release import ship_models
    from db.runs import latest_run

    settings = get_settings()
    engine = open_engine(args.db)
    if args.predictions_only:
        _store_held_out(settings.shipped_models_dir, catalogue_to_train_on(engine), quiet=args.quiet)
        print(f"held-out predictions stored in {settings.shipped_models_dir}")
        return 0
    checkpoints: dict[str, Path] = {}
    for kind in ModelKind:
        run_id = getattr(args, kind)
        if run_id is not None:
            checkpoints[kind] = run_checkpoint(engine, kind, run_id)
        elif latest_run(engine, model_kind=kind) is not None or not (settings.shipped_models_dir / f"{kind}.pt").is_file():
            checkpoints[kind] = latest_checkpoint(engine, kind)
        # else: no run of this kind here, so its shipped model stays
    catalogue = catalogue_to_train_on(engine)
    try:
        manifest = ship_models(checkpoints, settings.shipped_models_dir, catalogue_fingerprint=catalogue.fingerprint(), int8=args.int8)
    except ModelFileError as error:
        raise CommandError(str(error)) from error
    _calibrate(settings.shipped_models_dir, catalogue, quiet=args.quiet)
    _store_held_out(settings.shipped_models_dir, catalogue, quiet=args.quiet)
    for kind, entry in manifest["models"].items():
        accuracy = (entry.get("test_metrics") or {}).get("accuracy")
        print(
            f"{kind}: run {entry['run_id']}, test accuracy {'n/a' if accuracy is None else f'{accuracy:.3f}'}, {entry['bytes'] / 1e6:.1f} MB"
        )
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    """Calibrate a folder of models on their validation products; the shipped set's held-out figures follow."""
    settings = get_settings()
    models_dir = Path(args.models) if args.models else settings.shipped_models_dir
    catalogue = catalogue_to_train_on(open_engine(args.db))
    calibrations = _calibrate(
        models_dir, catalogue, quiet=args.quiet or args.json, target_accuracy=args.target_accuracy, set_confidence=args.set_confidence
    )
    if models_dir.resolve() == settings.shipped_models_dir.resolve():
        _store_held_out(models_dir, catalogue, quiet=args.quiet or args.json)
    from core.evaluation.calibrate import calibration_summary

    summaries = {kind: calibration_summary(calibration) for kind, calibration in calibrations.items()}
    if args.json:
        print(json.dumps({"models": str(models_dir), "calibration": summaries}))
        return 0
    for kind, summary in summaries.items():
        scaling = f"temperature {summary['temperature']:.3f}" if summary["temperature"] is not None else "vector scaling"
        if summary["confidence_map"]:
            scaling += ", then the top-label map"
        print(
            f"{kind}: {scaling}; confident from a probability of {summary['threshold']:.3f} "
            f"(for {summary['target_accuracy']:.0%} accuracy); sets at {summary['set_confidence']:.0%}"
        )
    return 0


def _calibrate(models_dir: Path, catalogue: Catalogue, *, quiet: bool, **options: float) -> dict:
    from core.evaluation.calibrate import calibrate_models
    from core.models.checkpoints import ModelFileError

    try:
        return calibrate_models(
            models_dir, catalogue, cache_dir=get_settings().cache_dir, progress=None if quiet else tqdm_progress(), **options
        )
    except (ModelFileError, ValueError) as error:
        raise CommandError(str(error)) from error


def _store_held_out(models_dir: Path, catalogue: Catalogue, *, quiet: bool) -> None:
    """The shipped set's predictions on its held-out products, stored beside it: Evaluation and the
    dashboard then draw at once for this catalogue instead of evaluating in the background."""
    from core.evaluation.catalogue import held_out_predictions
    from core.evaluation.held_out import store_held_out_predictions

    classifier = load_classifier(str(models_dir))
    predictions = held_out_predictions(
        classifier, catalogue, cache_dir=get_settings().cache_dir, progress=None if quiet else tqdm_progress()
    )
    store_held_out_predictions(models_dir, predictions, catalogue_fingerprint=catalogue.fingerprint())


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The `train`, `ship` and `baselines` subcommands."""
    train = commands.add_parser("train", help="train the image, text and/or combined classifier on the catalogue in the DB")
    train.add_argument("--model", choices=["image", "text", "combined", "all"], default="all")
    train.add_argument("--epochs", type=positive_int)
    train.add_argument("--lr", type=bounded_float(0, 10), help="learning rate (image SGD 0.002, text Adam 0.001, combined SGD 0.001)")
    train.add_argument("--batch-size", type=bounded_int(1, 4096))
    train.add_argument("--momentum", type=bounded_float(0, 1))
    train.add_argument("--step-size", type=positive_int, help="StepLR step in epochs")
    train.add_argument("--gamma", type=bounded_float(0, 1), help="StepLR factor")
    train.add_argument("--dropout", type=bounded_float(0, 0.95))
    train.add_argument("--weight-decay", type=bounded_float(0, 1))
    train.add_argument("--seed", type=bounded_int(0, 2**32 - 1), help="split and initialisation seed (default 42)")
    train.add_argument("--val-fraction", type=bounded_float(0.01, 0.9), help="validation share of the non-test products (default 0.2)")
    train.add_argument("--test-fraction", type=bounded_float(0.01, 0.9), help="held-out test share of products (default 0.2)")
    train.add_argument("--backbone", help="image backbone: efficientnet-lite0 (default), efficientnet-lite2, resnet50")
    train.add_argument("--finetune-layers", type=bounded_int(0, 6), help="text: encoder layers fine-tuned with the CNN (default 2)")
    train.add_argument(
        "--finetune-blocks", type=bounded_int(0, 16), help="image: last backbone blocks fine-tuned with the head (default 0)"
    )
    text_source = train.add_mutually_exclusive_group()
    text_source.add_argument(
        "--text-run", type=positive_int, metavar="RUN", help="combined: the text run it builds on (default: the latest)"
    )
    text_source.add_argument(
        "--text-model", metavar="FILE", help="combined: build on this text model file instead of a run (models/text.pt: the shipped one)"
    )
    train.add_argument(
        "--text-folds",
        type=bounded_int(0, 20),
        metavar="K",
        help="combined: read the text model's logits, cross-fitted on the training side by K fold models (default 0: its features)",
    )
    train.add_argument("--ship", action="store_true", help="make the trained models the shipped defaults under models/")
    train.add_argument("--quiet", action="store_true")
    train.add_argument("--db", help="database URL")
    train.set_defaults(handler=run_train)

    ship = commands.add_parser(
        "ship",
        help="make trained runs the shipped models under models/ (default: latest finished runs; a kind never trained here keeps its model)",
    )
    for kind in ModelKind:
        ship.add_argument(f"--{kind}", type=positive_int, metavar="RUN", help=f"the {kind} run to ship")
    ship.add_argument("--int8", action="store_true", help="store big weight matrices as int8 (a quarter of float32)")
    ship.add_argument("--quiet", action="store_true", help="no progress bars")
    ship.add_argument(
        "--predictions-only",
        action="store_true",
        help="only store the shipped set's held-out predictions for the catalogue (a set shipped without them)",
    )
    ship.add_argument("--db", help="database URL")
    ship.set_defaults(handler=run_ship)

    _add_calibrate(commands)

    baselines = commands.add_parser("baselines", help="measure the seed's baselines on the held-out test products")
    baselines.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=42)
    baselines.add_argument("--backbone", default="efficientnet-lite0")
    baselines.add_argument("--out", help="also write the figures to this JSON file")
    baselines.add_argument("--db", help="database URL")
    baselines.set_defaults(handler=run_baselines_command)


def _add_calibrate(commands: argparse._SubParsersAction) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="calibrate the models' probabilities, confidence thresholds and prediction sets on their validation products"
    )
    calibrate.add_argument("--models", help="folder of models (default: the shipped models/)")
    calibrate.add_argument(
        "--target-accuracy", type=bounded_float(0.5, 0.999), default=0.95, help="accuracy of the answers called confident (default 0.95)"
    )
    calibrate.add_argument(
        "--set-confidence", type=bounded_float(0.5, 0.999), default=0.9, help="how often a prediction set holds the category (default 0.9)"
    )
    calibrate.add_argument("--json", action="store_true", help="print the calibrations as JSON")
    calibrate.add_argument("--quiet", action="store_true")
    calibrate.add_argument("--db", help="database URL")
    calibrate.set_defaults(handler=run_calibrate)
