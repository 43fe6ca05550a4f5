"""The app's upload limits, held at the HTTP door too: a body limit checked before and while a body is
read, and model work that runs one request at a time in a worker thread, answered 503 when it outlasts
the timeout (the caller's connection and the event loop are freed; the thread finishes on its own)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_TYPE, TITLES, ApiProblem
from core.data.uploads import MAX_PHOTOS, MAX_UPLOAD_BYTES

MAX_BODY_BYTES = MAX_PHOTOS * MAX_UPLOAD_BYTES + 1024 * 1024  # eight full-size photos and the form around them
T = TypeVar("T")
# the Server-Timing metrics of the request being answered, filled by the middleware and the model worker
_request_timings: ContextVar[dict[str, float] | None] = ContextVar("request_timings", default=None)


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuses a request body over `limit` bytes with 413: at once from its Content-Length, or as soon as a
    chunked body passes the limit (the part read is dropped, the route never runs)."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    if not started and not refused:  # answered here: the route's own error handling never sees it
                        refused = True
                        await self._refuse(send)
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 has been sent; whatever the route makes of the cut body is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started and not refused:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        detail = f"the request body is over the {self.limit // (1024 * 1024)} MB limit ({MAX_PHOTOS} photos of {MAX_UPLOAD_BYTES // (1024 * 1024)} MB)"
        body = json.dumps({"type": "about:blank", "title": TITLES[413], "status": 413, "detail": detail}).encode()
        await send(
            {"type": "http.response.start", "status": 413, "headers": [(b"content-type", PROBLEM_TYPE.encode()), (b"connection", b"close")]}
        )
        await send({"type": "http.response.body", "body": body})


class ModelWorker:
    """Model work off the event loop, one request at a time: each forward pass then has every core, and
    throughput holds as clients are added instead of falling to thread contention."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.limiter = anyio.CapacityLimiter(1)

    async def run(self, work: Callable[[], T]) -> T:
        timings = _request_timings.get()

        def timed_work() -> T:  # timed in the worker thread: the model's part of the answer, without the wait for a turn
            started = time.perf_counter()
            try:
                return work()
            finally:
                if timings is not None:
                    timings["model"] = timings.get("model", 0.0) + (time.perf_counter() - started) * 1000

        with anyio.move_on_after(self.timeout_seconds) as scope:
            return await anyio.to_thread.run_sync(timed_work, limiter=self.limiter, abandon_on_cancel=True)
        assert scope.cancelled_caught
        raise ApiProblem(503, f"the request took longer than {self.timeout_seconds:g} s; try again, or with fewer photos")


class ServerTimingMiddleware:
    """`Server-Timing: app;dur=MS` on every response, the time inside the application, so a caller can
    tell the server's part of a slow answer from the network's; `, model;dur=MS` where model work ran (the
    classification or search itself), so the HTTP layer's own part is the difference."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        timings: dict[str, float] = {}
        token = _request_timings.set(timings)

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                metrics = {"app": (time.perf_counter() - started) * 1000, **timings}
                value = ", ".join(f"{name};dur={milliseconds:.1f}" for name, milliseconds in metrics.items()).encode()
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", value)]}
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            _request_timings.reset(token)


def server_timing(header: str) -> dict[str, float]:
    """The metrics of a `Server-Timing` header, `{"app": MS, "model": MS}`, for callers and tests."""
    metrics = {}
    for metric in header.split(","):
        name, _, parameters = metric.strip().partition(";")
        for parameter in parameters.split(";"):
            key, _, value = parameter.strip().partition("=")
            if key == "dur":
                metrics[name] = float(value)
    return metrics
