"""`classify` and `evaluate`: the shipped (or given) models on one listing or on a catalogue folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import CommandError, load_classifier, read_photo, tqdm_progress
from core.data.uploads import MAX_TEXT_CHARS
from core.enums import ModelKind
from core.runtime.terminal import printable


def run_classify(args: argparse.Namespace) -> int:
    from core.data.uploads import MAX_PHOTOS
    from core.inference.category_classifier import NothingToClassify

    if not args.image and not (args.text or "").strip():
        raise CommandError("give --image PATH (one or more) and/or --text TEXT")
    if len(args.image or []) > MAX_PHOTOS:
        raise CommandError(f"at most {MAX_PHOTOS} photos per listing ({len(args.image)} given)")
    if len(args.text or "") > MAX_TEXT_CHARS:
        raise CommandError(f"the text is {len(args.text):,} characters long; the limit is {MAX_TEXT_CHARS:,}")
    photos = [read_photo(path) for path in args.image or []]
    classifier = load_classifier(args.models)
    try:
        prediction = classifier.classify(images=photos, text=args.text)
    except NothingToClassify as error:
        raise CommandError(str(error)) from error
    print(json.dumps(prediction.as_json(), ensure_ascii=False))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from core.data.catalogue_folder import CatalogueFormatError, read_catalogue_folder
    from core.evaluation.catalogue import evaluate_catalogue

    try:
        catalogue, report = read_catalogue_folder(Path(args.data))
    except CatalogueFormatError as error:
        raise CommandError(str(error)) from error
    classifier = load_classifier(args.models)
    progress = None if args.quiet else tqdm_progress()
    results = evaluate_catalogue(classifier, catalogue, progress=progress)
    results["skipped_rows"] = len(report.skipped)
    for problem in results["skipped_photos"]:
        print(printable(f"skipped photo {problem}"))
    Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    for kind in ModelKind:
        metrics = results[kind]
        if metrics["n"]:
            print(
                f"{kind:>8}: accuracy {metrics['accuracy']:.3f}, top-3 {metrics['top3_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} (n={metrics['n']})"
            )
    print(f"written to {args.out}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The `classify` and `evaluate` subcommands."""
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
