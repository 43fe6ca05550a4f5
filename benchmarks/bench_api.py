"""HTTP API benchmark: classify (a photo and its description) and hybrid search through a real
`python -m core serve` on 127.0.0.1, under 1, 4 and 8 concurrent clients: requests/s, p50, p95 and
errors; and the API's median classify against the same classification in-process, in turn.

    python -m benchmarks.bench_api [--requests 120] [--seconds 30] [--overhead-runs 40]

Runs on the catalogue of the current settings (import it first). Each level is bounded in count
(`--requests` per level) and in time (`--seconds`); loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
from sqlalchemy import select

from benchmarks.common import print_table, serve_api
from core.data.images import open_image
from core.settings import get_settings
from db.queries import products_by_ids
from db.session import make_engine, session_scope
from db.tables import Product

CLIENT_COUNTS = (1, 4, 8)
QUERIES = ["iphone 12", "oak dining table", "something to sit on in the garden", "baby clothes 6 months", "electric drill"]


def sample_listings(count: int) -> list[tuple[bytes, str]]:
    """(photo file, title + description) of `count` catalogue products with photos."""
    settings = get_settings()
    with session_scope(make_engine(settings.database_url)) as session:
        ids = list(session.scalars(select(Product.id).where(Product.images.any()).order_by(Product.pk).limit(count)))
        products = products_by_ids(session, ids)
    return [((settings.media_dir / product.image_paths[0]).read_bytes(), f"{product.name}\n{product.description}") for product in products]


def in_blocks(*calls: Callable[[], object], runs: int, block: int = 10, pause: float = 0.5) -> list[float]:
    """Median seconds of each call, timed in blocks of `block` calls taken in turn with a pause between:
    each process's idle inference threads settle before the other's block (timed call by call in turn,
    the API server's and this process's threads contend, and both look twice as slow)."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(max(1, runs // block)):
        for call, times in zip(calls, samples):
            time.sleep(pause)
            call()  # untimed: the first call after a pause wakes the threads
            for _ in range(block):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
    return [statistics.median(times) for times in samples]


def under_load(
    send: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]], *, clients: int, requests: int, seconds: float
) -> dict[str, float]:
    """`requests` calls shared by `clients` concurrent callers (each its own connection, all on one event
    loop: a light load generator beside the server on the same cores), stopped at `seconds`."""
    latencies: list[float] = []
    errors = 0
    calls = iter(range(requests))

    async def caller(deadline: float) -> None:
        nonlocal errors
        async with httpx.AsyncClient(timeout=60) as client:
            for call in calls:
                if time.monotonic() > deadline:
                    return
                started = time.perf_counter()
                try:
                    ok = (await send(client, call)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not ok

    async def run() -> float:
        started = time.perf_counter()
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(caller(deadline) for _ in range(clients)))
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies),
        "p95": float(np.percentile(latencies, 95)),
        "errors": errors,
        "n": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_api")
    parser.add_argument("--requests", type=int, default=120, help="requests per level (clients x endpoint)")
    parser.add_argument("--seconds", type=float, default=30, help="the most one level may take")
    parser.add_argument("--overhead-runs", type=int, default=40)
    args = parser.parse_args()
    settings = get_settings()
    listings = sample_listings(16)

    def classify_request(call: int, url: str) -> dict[str, Any]:
        photo, text = listings[call % len(listings)]
        return {"url": f"{url}/classify", "files": [("photos", ("photo.jpg", photo, "image/jpeg"))], "data": {"text": text}}

    def search_request(call: int, url: str) -> dict[str, Any]:
        return {"url": f"{url}/search", "params": {"q": QUERIES[call % len(QUERIES)], "mode": "hybrid", "limit": 20}}

    def classify(client: httpx.Client, call: int, url: str) -> httpx.Response:
        return client.post(**classify_request(call, url))

    def search(client: httpx.Client, call: int, url: str) -> httpx.Response:
        return client.get(**search_request(call, url))

    async def classify_async(client: httpx.AsyncClient, call: int, url: str) -> httpx.Response:
        return await client.post(**classify_request(call, url))

    async def search_async(client: httpx.AsyncClient, call: int, url: str) -> httpx.Response:
        return await client.get(**search_request(call, url))

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as scratch, serve_api(settings.data_dir, settings.database_url, Path(scratch) / "api.log") as server:
        url = server.url
        with httpx.Client(timeout=600) as warm:  # models loaded, catalogue embedded and indexed before timing
            assert warm.get(f"{url}/readyz").status_code == 200
            assert search(warm, 0, url).status_code == 200
            assert classify(warm, 0, url).status_code == 200
        throughput: dict[str, list[float]] = {}
        for name, send in (("classify", classify_async), ("hybrid search", search_async)):
            for clients in CLIENT_COUNTS:
                figures = under_load(
                    lambda client, call: send(client, call, url), clients=clients, requests=args.requests, seconds=args.seconds
                )
                throughput.setdefault(name, []).append(figures["rps"])
                rows.append(
                    (
                        f"API {name}, {clients} client{'s' if clients > 1 else ''}",
                        f"{figures['rps']:.1f} req/s · p50 {figures['p50']:.1f} ms · p95 {figures['p95']:.1f} ms · "
                        f"errors {figures['errors']} of {figures['n']}",
                    )
                )
        for name, rates in throughput.items():
            rows.append((f"API {name}: throughput 8 clients / 1 client", f"{rates[-1] / rates[0]:.2f} (must not fall below 1.0)"))

        from core.inference.category_classifier import CategoryClassifier

        classifier = CategoryClassifier(settings.models_dir)
        photo, text = listings[0]
        app_ms: list[float] = []

        def classify_timed(client: httpx.Client) -> None:
            response = classify(client, 0, url)
            app_ms.append(float(response.headers["server-timing"].split("dur=")[1]))

        with httpx.Client(timeout=60) as client:
            api_seconds, local_seconds = in_blocks(
                lambda: classify_timed(client),
                lambda: classifier.classify(images=[open_image(photo, name="photo.jpg")], text=text),
                runs=args.overhead_runs,
            )
    rows.append(
        (
            "classify median: API (1 client) vs in-process",
            f"{api_seconds * 1000:.1f} ms (inside the server {statistics.median(app_ms):.1f} ms) vs {local_seconds * 1000:.1f} ms",
        )
    )
    rows.append(("API overhead on classify", f"{(api_seconds / local_seconds - 1) * 100:+.0f}% (target <= +20%)"))
    print_table(rows)


if __name__ == "__main__":
    main()
