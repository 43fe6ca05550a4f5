"""Progress callbacks, defined once: how a long job says how far it is."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]  # (done, total)
StageProgress = Callable[[str, int, int], None]  # (stage, done, total): a job of several stages


def for_stage(progress: StageProgress | None, stage: str) -> Progress | None:
    """A stage's (done, total) reports, passed on with the stage's name."""
    return None if progress is None else (lambda done, total: progress(stage, done, total))
