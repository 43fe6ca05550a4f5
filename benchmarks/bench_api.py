"""HTTP API benchmark: classify (a photo and its description) and hybrid search through a real
`python -m core serve` on 127.0.0.1, under 1, 4 and 8 concurrent clients: requests/s, p50, p95 and
errors; and the API's median classify against the same classification in-process, in turn, called
by a lean client (the body encoded once, the standard library's http.client) and by httpx, each with
the server's own split (`Server-Timing`: the time inside the server and the model's part of it).

    python -m benchmarks.bench_api [--requests 240] [--seconds 30] [--overhead-runs 200]

Runs on the catalogue of the current settings (import it first). Each level is bounded in count
(`--requests` per level) and in time (`--seconds`); loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import statistics
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx2 as httpx
import numpy as np
from sqlalchemy import select

from api.limits import server_timing
from benchmarks.common import print_table, serve_api
from core.data.images import open_image
from core.settings import get_settings
from db.queries import products_by_ids
from db.session import make_engine, session_scope
from db.tables import Product

CLIENT_COUNTS = (1, 4, 8)
T = TypeVar("T")
QUERIES = ["iphone 12", "oak dining table", "something to sit on in the garden", "baby clothes 6 months", "electric drill"]


def sample_listings(count: int) -> list[tuple[bytes, str]]:
    """(photo file, title + description) of `count` catalogue products with photos."""
    settings = get_settings()
    with session_scope(make_engine(settings.database_url)) as session:
        ids = list(session.scalars(select(Product.id).where(Product.images.any()).order_by(Product.pk).limit(count)))
        products = products_by_ids(session, ids)
    return [((settings.media_dir / product.image_paths[0]).read_bytes(), f"{product.name}\n{product.description}") for product in products]


def in_blocks(*calls: Callable[[], T], runs: int, block: int = 5, pause: float = 0.3) -> tuple[list[float], list[list[T]]]:
    """Median seconds of each call over `runs` calls, and what its timed calls returned, timed in short
    blocks of `block` calls taken in turn with a pause between: each process's idle inference threads settle
    before the other's block (timed call by call in turn, the API server's and this process's threads
    contend, and both look twice as slow), and many short blocks spread the VM's drifting speed over every
    call alike (it moves 20% within seconds)."""
    samples: list[list[float]] = [[] for _ in calls]
    answers: list[list[T]] = [[] for _ in calls]
    for _ in range(max(1, runs // block)):
        for call, times, returned in zip(calls, samples, answers):
            time.sleep(pause)
            call()  # untimed, its answer dropped: the first call after a pause wakes the threads
            for _ in range(block):
                started = time.perf_counter()
                returned.append(call())
                times.append(time.perf_counter() - started)
    return [statistics.median(times) for times in samples], answers


class LeanClient:
    """One kept-alive HTTP/1.1 connection from the standard library, sending bodies encoded beforehand: the
    cost of a request is then the API's (the wire, the server's HTTP layer), not the client library's."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)

    def post(self, path: str, *, body: bytes, content_type: str) -> dict[str, float]:
        """The response's Server-Timing metrics; an answer other than 200 fails the benchmark."""
        self.connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = self.connection.getresponse()
        answer = response.read()
        assert response.status == 200, answer[:500]
        return server_timing(response.getheader("server-timing", ""))


def under_load(
    send: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
    *,
    levels: tuple[int, ...],
    requests: int,
    seconds: float,
    rounds: int = 12,
) -> tuple[dict[int, dict[str, float]], list[float]]:
    """Each level of concurrent clients (each its own connection, all on one event loop: a light load
    generator beside the server on the same cores) sends `requests` calls (rounded down to whole bursts)
    in `rounds` short bursts taken in turn with the other levels' (levels run whole one after another were
    told apart by the VM's drifting speed, 20% within seconds, more than by the server). Every burst sends
    the same calls. A level stops at `seconds` of its own time. Returns each level's figures and, round by
    round, the last level's requests/s over the first's (neighbours in time: the drift touches both alike)."""
    latencies: dict[int, list[float]] = {clients: [] for clients in levels}
    busy = dict.fromkeys(levels, 0.0)
    errors = dict.fromkeys(levels, 0)
    ratios: list[float] = []

    async def caller(clients: int, client: httpx.AsyncClient, burst: Iterator[int]) -> None:
        for call in burst:
            started = time.perf_counter()
            try:
                ok = (await send(client, call)).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies[clients].append((time.perf_counter() - started) * 1000)
            errors[clients] += not ok

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack:  # each caller keeps its connection from round to round
            callers = {
                clients: [await stack.enter_async_context(httpx.AsyncClient(timeout=60)) for _ in range(clients)] for clients in levels
            }
            count = max(1, requests // rounds)
            for _ in range(rounds):
                rates = {}
                for clients, connections in callers.items():
                    if busy[clients] >= seconds:
                        return
                    shared = iter(range(count))  # the burst's calls, taken by whichever caller is free
                    started = time.perf_counter()
                    await asyncio.gather(*(caller(clients, client, shared) for client in connections))
                    elapsed = time.perf_counter() - started
                    busy[clients] += elapsed
                    rates[clients] = count / elapsed
                ratios.append(rates[levels[-1]] / rates[levels[0]])

    asyncio.run(run())
    figures = {
        clients: {
            "rps": len(latencies[clients]) / busy[clients],
            "p50": statistics.median(latencies[clients]),
            "p95": float(np.percentile(latencies[clients], 95)),
            "errors": errors[clients],
            "n": len(latencies[clients]),
        }
        for clients in levels
    }
    return figures, ratios


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_api")
    parser.add_argument("--requests", type=int, default=240, help="requests per level (clients x endpoint)")
    parser.add_argument("--seconds", type=float, default=30, help="the most one level may take")
    parser.add_argument("--overhead-runs", type=int, default=200, help="timed classifications per way of calling")
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
        for name, send in (("classify", classify_async), ("hybrid search", search_async)):
            levels, ratios = under_load(
                lambda client, call: send(client, call, url), levels=CLIENT_COUNTS, requests=args.requests, seconds=args.seconds
            )
            for clients, figures in levels.items():
                rows.append(
                    (
                        f"API {name}, {clients} client{'s' if clients > 1 else ''}",
                        f"{figures['rps']:.1f} req/s · p50 {figures['p50']:.1f} ms · p95 {figures['p95']:.1f} ms · "
                        f"errors {figures['errors']} of {figures['n']}",
                    )
                )
            quartiles = np.percentile(ratios, [25, 75])
            rows.append(
                (
                    f"API {name}: throughput {CLIENT_COUNTS[-1]} clients / {CLIENT_COUNTS[0]} client{'s' if CLIENT_COUNTS[0] > 1 else ''}",
                    f"{levels[CLIENT_COUNTS[-1]]['rps'] / levels[CLIENT_COUNTS[0]]['rps']:.2f} overall; round by round median "
                    f"{statistics.median(ratios):.2f} (quartiles {quartiles[0]:.2f}-{quartiles[1]:.2f}, {len(ratios)} rounds; "
                    "must not fall below 1.0)",
                )
            )

        from core.inference.category_classifier import CategoryClassifier

        classifier = CategoryClassifier(settings.models_dir)
        photo, text = listings[0]
        prepared = httpx.Request("POST", **classify_request(0, url))  # the same request as httpx sends, encoded once
        body, content_type = prepared.read(), prepared.headers["content-type"]
        lean = LeanClient(url)

        def through_httpx(client: httpx.Client) -> dict[str, float]:
            response = classify(client, 0, url)
            assert response.status_code == 200, response.text
            return server_timing(response.headers["server-timing"])

        def in_process() -> dict[str, float]:
            classifier.classify(images=[open_image(photo, name="photo.jpg")], text=text)
            return {}

        with httpx.Client(timeout=60) as client:
            (httpx_seconds, lean_seconds, local_seconds), (httpx_timings, lean_timings, _) = in_blocks(
                lambda: through_httpx(client),
                lambda: lean.post("/classify", body=body, content_type=content_type),
                in_process,
                runs=args.overhead_runs,
            )
    rows.append(("classify median, in-process (the CLI's call)", f"{local_seconds * 1000:.1f} ms"))
    for name, seconds, timings in (
        ("a lean client (body encoded once, http.client)", lean_seconds, lean_timings),
        ("httpx (encodes and parses in Python)", httpx_seconds, httpx_timings),
    ):
        app_ms = statistics.median(timing["app"] for timing in timings)
        model_ms = statistics.median(timing["model"] for timing in timings)
        rows.append(
            (
                f"classify median through the API, {name}",
                f"{seconds * 1000:.1f} ms (inside the server {app_ms:.1f} ms, of it the model {model_ms:.1f} ms): "
                f"{(seconds / local_seconds - 1) * 100:+.0f}% over in-process, {(seconds * 1000 / model_ms - 1) * 100:+.0f}% over "
                "the server's own model time",
            )
        )
    rows.append(("API overhead on classify (lean client)", f"{(lean_seconds / local_seconds - 1) * 100:+.0f}% (target <= +20%)"))
    print_table(rows)


if __name__ == "__main__":
    main()
