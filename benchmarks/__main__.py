"""Every benchmark in one command, on the catalogue of the current settings (import it first):

    python -m benchmarks [--quick]

Runs the catalogue, model, search, app, HTTP API and PostgreSQL benchmarks one after another, each in its own process
(so one's memory and caches never colour another's), prints their tables and writes them all to
benchmarks/results.md. `--quick` uses fewer repeats (a smoke run; the README's figures are from
the full run).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.common import machine_line

BENCHMARKS = {
    "engines": (["benchmarks.bench_engines"], ["--batches", "2", "--no-compile"]),
    "catalogue": (["benchmarks.bench_catalogue"], ["--runs", "1"]),
    "models": (["benchmarks.bench_models"], ["--photos", "128", "--texts", "128", "--evaluate-products", "100"]),
    "search": (["benchmarks.bench_search"], ["--repeat", "30", "--synthetic", "100000", "--no-pages"]),
    "app": (["benchmarks.bench_app"], ["--runs", "1"]),
    "api": (["benchmarks.bench_api"], ["--requests", "20", "--overhead-runs", "20"]),
    "postgres": (["benchmarks.bench_postgres"], ["--sizes", "100000", "--repeat", "30"]),
}
RESULTS = Path(__file__).resolve().parent / "results.md"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run, not figures to report")
    parser.add_argument("--only", choices=list(BENCHMARKS), nargs="*", help="run only these")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    sections = [
        f"# Benchmark results\n\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · commit {commit} · {platform.node()} · "
        f"Python {platform.python_version()}" + (" · quick run" if args.quick else "") + f"\n\n{machine_line()}"
    ]
    failed = []
    for name, (module, quick_options) in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", *module, *(quick_options if args.quick else [])], capture_output=True, text=True)
        table = [line for line in result.stdout.splitlines() if line.startswith("|")]
        print("\n".join(table) or result.stderr[-2000:], flush=True)
        if result.returncode != 0:
            failed.append(name)
        body = "| what | figure |\n| --- | --- |\n" + "\n".join(table) if table else f"failed:\n\n```\n{result.stderr[-2000:]}\n```"
        sections.append(f"## {name} ({time.perf_counter() - started:.0f} s)\n\n{body}")
    RESULTS.write_text("\n\n".join(sections) + "\n")
    print(f"written to {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
