"""Errors as RFC 9457 problem details (`application/problem+json`): a status, a title, a sentence for
the caller and, for a bad input, the field it came from. Never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.runtime.terminal import printable

PROBLEM_TYPE = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "API key needed",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    422: "Invalid input",
    500: "Internal error",
    503: "Not ready",
}
log = logging.getLogger("marketplace.api")


class ApiProblem(Exception):
    """Raised by a route: answered as a problem with `status`, naming `field` when one input is at fault."""

    def __init__(self, status: int, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field, self.headers = status, detail, field, headers


def problem_response(status: int, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, object] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": printable(detail)}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiProblem)
        return problem_response(error.status, error.detail, field=error.field, headers=error.headers)

    async def on_validation(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header", "form")]
        field = location[0] if location else None
        message = str(first.get("msg", "invalid input"))
        return problem_response(422, f"{field}: {message}" if field else message, field=field)

    async def on_http(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return problem_response(error.status_code, str(error.detail), headers=getattr(error, "headers", None))

    async def on_anything(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)  # the traceback stays in the server log
        return problem_response(500, f"the server failed on this request ({type(error).__name__})")

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_anything)
