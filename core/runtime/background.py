"""Whole-catalogue work (embedding it, evaluating models on it) run in a background thread, so no
page waits on it: a page starts the job, reads its progress on every rerun, and uses its result
once it is done. One job per key per process; a finished job's result is kept until it is cleared.

The work itself checkpoints to disk (core.encoders.embedding_store writes its cache as it goes), so a job killed
with its process resumes where it stopped the next time it is started.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.runtime.progress import StageProgress

Work = Callable[[StageProgress], Any]


@dataclass
class JobState:
    key: str
    started_at: float = field(default_factory=time.time)
    stage: str = "starting"
    done: int = 0
    total: int = 0
    finished_at: float | None = None
    result: Any = None
    error: str | None = None  # one line for a person; the traceback goes to the log

    @property
    def running(self) -> bool:
        return self.finished_at is None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def describe(self) -> str:
        if self.error:
            return f"failed: {self.error}"
        if not self.total:
            return self.stage
        return f"{self.stage}: {self.done:,} of {self.total:,} ({self.fraction:.0%})"


_jobs: dict[str, JobState] = {}
_lock = threading.Lock()


def start(key: str, work: Work) -> JobState:
    """Start `work(progress)` in a daemon thread unless a job with this key exists (running, done
    or failed: a failed job stays failed, with its message, until `clear`)."""
    with _lock:
        state = _jobs.get(key)
        if state is not None:
            return state
        state = _jobs[key] = JobState(key)

    def progress(stage: str, done: int, total: int) -> None:
        state.stage, state.done, state.total = stage, done, total

    def run() -> None:
        try:
            state.result = work(progress)
        except Exception as error:  # noqa: BLE001 - reported on the page, not raised into a thread's void
            state.error = f"{type(error).__name__}: {error}"
            traceback.print_exc()
        finally:
            state.finished_at = time.time()

    threading.Thread(target=run, name=f"background:{key}", daemon=True).start()
    return state


def status(key: str) -> JobState | None:
    return _jobs.get(key)


def jobs() -> list[JobState]:
    """Every job this process knows, running or ended (for `info`-style views and tests)."""
    return list(_jobs.values())


def clear(key: str) -> None:
    """Forget a finished job (its result or failure), so that it can be started again."""
    with _lock:
        state = _jobs.get(key)
        if state is not None and not state.running:
            del _jobs[key]


def wait(key: str, *, timeout: float) -> JobState | None:
    """For the CLI and tests: block until the job ends or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while (state := _jobs.get(key)) is not None and state.running and time.monotonic() < deadline:
        time.sleep(0.05)
    return state
