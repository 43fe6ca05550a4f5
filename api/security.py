"""Who may call what: writes need a live API key (`X-API-Key: KEY` or `Authorization: Bearer KEY`);
reads are open unless MARKETPLACE_API_READS_NEED_KEY is set. The key's name is recorded as who made a change."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from api.problems import ApiProblem
from services.api_keys import key_holder

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="marketplace-browser"'}


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


async def writer(request: Request) -> str:
    """The name of the key holder making this request; 401 without a live key."""
    key = presented_key(request)
    if key is None:
        raise ApiProblem(401, "this endpoint changes the catalogue: send an API key (X-API-Key header)", headers=CHALLENGE)
    holder = await run_in_threadpool(key_holder, request.app.state.engine, key)
    if holder is None:
        raise ApiProblem(401, "the API key is unknown or revoked", headers=CHALLENGE)
    return holder


async def reader(request: Request) -> str | None:
    """Open unless reads are closed by the settings; then as `writer`."""
    if not request.app.state.settings.api_reads_need_key:
        return None
    return await writer(request)
