"""What every command shares: one-line errors, the database, progress bars, argument types, and
the catalogue and checkpoints the model commands start from."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from core.enums import RunStatus
from core.runtime.terminal import printable
from core.settings import get_settings

if TYPE_CHECKING:
    from PIL import Image
    from sqlalchemy import Engine

    from core.data.catalogue import Catalogue
    from core.inference.category_classifier import CategoryClassifier
    from core.runtime.progress import StageProgress
    from core.training.records import EpochResult

MAX_LIMIT = 1_000


class CommandError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def open_engine(database_url: str | None) -> Engine:
    from db.session import make_engine

    return make_engine(database_url or get_settings().database_url)


def progress_unit(stage: str) -> str:
    """What a stage's bar counts: rows while importing products, otherwise the stage's own noun."""
    if stage == "products":
        return " rows"
    if stage == "images" or "photo" in stage:
        return " photos"
    if stage == "text fold models":
        return " models"
    return " texts" if "text" in stage else " items"


def tqdm_progress() -> StageProgress:
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit=progress_unit(stage))
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def catalogue_to_train_on(engine: Engine) -> Catalogue:
    from services.catalogue import models_catalogue

    catalogue = models_catalogue(engine, settings=get_settings())
    if not catalogue.products:
        raise CommandError("the catalogue is empty: import one first (python -m core import DIR)")
    return catalogue


def run_checkpoint(engine: Engine, kind: str, run_id: int) -> Path:
    from db.runs import checkpoint_file
    from db.session import session_scope
    from db.tables import TrainingRun

    with session_scope(engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.model_kind != kind or run.status != RunStatus.FINISHED or not run.checkpoint_path:
            raise CommandError(f"run {run_id} is not a finished {kind} run")
        return checkpoint_file(run.checkpoint_path, root=get_settings().data_dir)


def latest_checkpoint(engine: Engine, kind: str) -> Path:
    from db.runs import checkpoint_file, latest_run

    run = latest_run(engine, model_kind=kind)
    if run is None or not run.checkpoint_path:
        raise CommandError(f"no finished {kind} run to build on: train it first (python -m core train --model {kind})")
    return checkpoint_file(run.checkpoint_path, root=get_settings().data_dir)


def stop_on_sigterm() -> None:
    """`kill` stops a training run like Ctrl-C does: marked stopped, best checkpoint kept."""
    import signal

    def interrupt(_signal: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


class EpochBars:
    """A tqdm bar per model over its epochs, showing the latest losses and accuracies."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def start(self, kind: str, epochs: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=epochs, desc=f"{kind} epochs", unit="epoch", disable=self.quiet)

    def update(self, kind: str, result: EpochResult) -> None:
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{result.train_loss:.3f}",
                acc=f"{result.train_accuracy:.3f}",
                val_loss=f"{result.val_loss:.3f}",
                val_acc=f"{result.val_accuracy:.3f}",
            )
            self.bar.update(1)
        line = (
            f"  {kind} epoch {result.epoch}: train loss {result.train_loss:.3f} acc {result.train_accuracy:.3f} | "
            f"val loss {result.val_loss:.3f} acc {result.val_accuracy:.3f} | lr {result.learning_rate:.2g} | {result.seconds:.0f} s"
        )
        (self.bar.write if self.bar is not None and not self.quiet else print)(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def read_photo(path: str) -> Image.Image:
    """A photo named on the command line, with the app's upload limits (a regular file of at most 10 MB)."""
    from core.data.images import ImageError, open_image
    from core.data.uploads import MAX_UPLOAD_BYTES

    try:
        return open_image(Path(path), name=path, max_bytes=MAX_UPLOAD_BYTES)
    except ImageError as error:
        raise CommandError(str(error)) from error


def price_argument(text: str) -> Decimal:
    from core.data.cleaning import parse_price

    try:
        return parse_price(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def bounded(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], int | float]:
    """An argparse type: a number of `kind` from `low` to `high` (a 20-digit number or NaN is refused
    with the bounds, never overflowed)."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"not a {noun}: {printable(text[:40])}") from error
        if not low <= value <= high:  # NaN fails this too
            shown = f"{int(low)} and {int(high)}" if kind is int else f"{low:g} and {high:g}"
            raise argparse.ArgumentTypeError(f"must be between {shown}")
        return value

    return parse


def bounded_int(low: int, high: int) -> Callable[[str], int | float]:
    return bounded(int, low, high)


def bounded_float(low: float, high: float) -> Callable[[str], int | float]:
    return bounded(float, low, high)


positive_int = bounded_int(1, 100_000)


def load_classifier(models_dir: str | None) -> CategoryClassifier:
    """The category classifier of `models_dir` (default: the shipped models); a bad model file is a CommandError."""
    from core.inference.category_classifier import CategoryClassifier
    from core.models.checkpoints import ModelFileError

    try:
        return CategoryClassifier(Path(models_dir) if models_dir else get_settings().models_dir)
    except ModelFileError as error:
        raise CommandError(str(error)) from error
