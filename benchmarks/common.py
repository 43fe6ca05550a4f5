"""Timing helpers shared by the benchmarks, and starting the app, the API and PostgreSQL as real servers (also used by the tests)."""

from __future__ import annotations

import itertools
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.settings import PROJECT_ROOT, home_environment


def time_calls(call: Callable[[], object], *, repeat: int, warmup: int = 3) -> dict[str, float]:
    """Milliseconds per call: median, p95, over `repeat` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(samples), "p95_ms": float(np.percentile(samples, 95)), "n": repeat}


def alternating(*calls: Callable[[], object], runs: int) -> list[float]:
    """Median seconds of each call, the calls run in turn `runs` times after one untimed round (a
    virtual machine's drifting speed then touches them alike)."""
    for call in calls:
        call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(runs):
        for call, times in zip(calls, samples):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
    return [statistics.median(times) for times in samples]


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


class PostgresServer:
    """A PostgreSQL 16 server (with pgvector) of a test session's or a benchmark's own, from the pgserver
    wheel: started in a folder (a temporary one), listening on a Unix socket only, stopped by `stop()`."""

    def __init__(self, folder: Path, *, settings: Mapping[str, str] | None = None) -> None:
        """`settings`: server parameters (`shared_buffers`, ...) written with ALTER SYSTEM, then a restart."""
        import pgserver

        self.server = pgserver.get_server(folder, cleanup_mode="stop")
        if settings:
            for name, value in settings.items():
                self.server.psql(f"ALTER SYSTEM SET {name} = '{value}';")
            self.server.cleanup()
            self.server = pgserver.get_server(folder, cleanup_mode="stop")
        self._databases = itertools.count()

    def new_database(self) -> str:
        """The SQLAlchemy URL of a new, empty database on the server."""
        name = f"catalogue_{next(self._databases)}"
        self.server.psql(f"CREATE DATABASE {name};")
        return self.server.get_uri(name).replace("postgresql://", "postgresql+psycopg://", 1)

    def stop(self) -> None:
        self.server.cleanup()


@dataclass(frozen=True)
class AppServer:
    url: str
    pid: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_app(home: Path, database_url: str, log_path: Path, *, script: Path = PROJECT_ROOT / "streamlit_app.py") -> Iterator[AppServer]:
    """`streamlit run` on 127.0.0.1 over the catalogue in `home`; yields the server once it answers its health check."""
    port = _free_port()
    environment = {**os.environ, **home_environment(home, database_url=database_url)}
    environment.pop("MARKETPLACE_MODELS", None)
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
    ]
    with _served(command, environment, log_path, f"http://127.0.0.1:{port}", health="/_stcore/health", what="streamlit", wait=90) as server:
        yield server


@contextmanager
def serve_api(home: Path, database_url: str, log_path: Path, *, media_dir: Path | None = None) -> Iterator[AppServer]:
    """`python -m core serve` (Uvicorn) on a free 127.0.0.1 port over the catalogue in `home`; yields it once /healthz answers."""
    port = _free_port()
    environment = {**os.environ, **home_environment(home, database_url=database_url, media_dir=media_dir)}
    environment.pop("MARKETPLACE_MODELS", None)
    command = [sys.executable, "-m", "core", "serve", "--port", str(port), "--quiet"]
    with _served(command, environment, log_path, f"http://127.0.0.1:{port}", health="/healthz", what="the API", wait=120) as server:
        yield server


@contextmanager
def _served(
    command: list[str], environment: dict[str, str], log_path: Path, url: str, *, health: str, what: str, wait: float
) -> Iterator[AppServer]:
    """A server process started with its output in `log_path`, yielded once `health` answers 200, stopped after."""
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                with urllib.request.urlopen(f"{url}{health}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"{what} did not start: " + log_path.read_text()
            time.sleep(0.3)
        yield AppServer(url, server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def machine_line() -> str:
    """What every table's figures depend on: the CPU, its kernel level and bf16 units, the precision
    and engines the code chose, the threads."""
    import torch

    from core.encoders.image_engine import engine_name
    from core.encoders.text_engine import sentence_encoder
    from core.runtime.compute import cpu_info, precision

    cpu = cpu_info()
    return (
        f"CPU: {cpu.model}, {cpu.cores} cores, torch capability {cpu.capability}, native bf16 {'yes' if cpu.bf16 else 'no'} · "
        f"precision {precision()} · image engine {engine_name('efficientnet-lite0')} · text engine {sentence_encoder()[0]} · "
        f"{torch.get_num_threads()} threads · "
        f"torch {torch.__version__}"
    )
