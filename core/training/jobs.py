"""Training runs started from the app: `python -m core train` in a child process, so the app
stays responsive; the run reports each epoch to the database, where the Training page reads it.

Jobs are recorded as small JSON files (pid, command, log file), so any app session, or the app
after a restart, can show them and stop them (SIGTERM: the run is marked stopped, its best
checkpoint kept).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.enums import ModelKind
from core.runtime.processes import process_alive
from core.settings import PROJECT_ROOT

MODEL_KINDS = tuple(ModelKind)
_children: dict[int, subprocess.Popen] = {}  # reaped when polled, so finished jobs leave no zombie


@dataclass(frozen=True)
class TrainingJob:
    pid: int
    kind: str
    command: list[str]
    log_path: str
    started_at: float

    @property
    def running(self) -> bool:
        child = _children.get(self.pid)
        if child is not None:
            return child.poll() is None
        if not process_alive(self.pid):
            return False
        cmdline = Path(f"/proc/{self.pid}/cmdline")
        return not cmdline.is_file() or b"core" in cmdline.read_bytes()  # a reused pid is not our job

    def log_tail(self, *, lines: int = 15) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        # tqdm redraws with carriage returns: keep each line's last state.
        return "\n".join(line.split("\r")[-1] for line in text.splitlines()[-lines:])


def train_command(kind: str, options: dict[str, object]) -> list[str]:
    """The CLI call for a run: `--name value` for each option that is set."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    command = [sys.executable, "-m", "core", "train", "--model", kind, "--quiet"]
    for name, value in options.items():
        if value is not None and value != "":
            command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def start_training_job(kind: str, options: dict[str, object], *, jobs_dir: Path) -> TrainingJob:
    jobs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = jobs_dir / f"{stamp}-{kind}.log"
    command = train_command(kind, options)
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )  # Ctrl-C in the app's terminal does not kill the run
    _children[child.pid] = child
    job = TrainingJob(child.pid, kind, command, str(log_path), time.time())
    (jobs_dir / f"{stamp}-{kind}-{child.pid}.json").write_text(json.dumps(asdict(job)))
    return job


def list_jobs(jobs_dir: Path) -> list[TrainingJob]:
    """Recorded jobs, newest first."""
    jobs = []
    for path in sorted(jobs_dir.glob("*.json"), reverse=True) if jobs_dir.is_dir() else []:
        try:
            jobs.append(TrainingJob(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # a damaged record is not worth failing a page over
    return jobs


def stop_job(job: TrainingJob) -> bool:
    """SIGTERM the job (the run is marked stopped); False when it had already ended."""
    if not job.running:
        return False
    os.kill(job.pid, signal.SIGTERM)
    return True
