"""The HTTP API's application: routes by concern, problem+json errors, the body limit, CORS only where
configured, and the models and indexes shared by every request of the process."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine

from api import catalogue_routes, classify_routes, health_routes, listing_routes, review_routes
from api.limits import MAX_BODY_BYTES, BodyLimitMiddleware, ModelWorker, ServerTimingMiddleware
from api.problems import install_problem_handlers
from core.settings import Settings, get_settings
from services.catalogue import connect
from services.model_resources import ModelResources

DESCRIPTION = """Classify, search and browse the marketplace catalogue, work its review queue and add listings.

Reads are open unless the server sets `MARKETPLACE_API_READS_NEED_KEY=1`; writes (`POST /listings`, label changes)
need an API key (`python -m core api-key create NAME`), sent as `X-API-Key: KEY`. Errors are
`application/problem+json` with `status`, `detail` and, for a bad input, `field`."""


def create_app(*, settings: Settings | None = None, engine: Engine | None = None, body_limit: int = MAX_BODY_BYTES) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or connect(settings.database_url)
    app = FastAPI(title="Marketplace browser API", version="1", description=DESCRIPTION)
    app.state.settings, app.state.engine = settings, engine
    app.state.resources = ModelResources(engine, settings)
    app.state.model_worker = ModelWorker(timeout_seconds=settings.api_timeout_seconds)
    install_problem_handlers(app)
    for routes in (health_routes, classify_routes, catalogue_routes, review_routes, listing_routes):
        app.include_router(routes.router)
    app.add_middleware(BodyLimitMiddleware, limit=body_limit)
    app.add_middleware(ServerTimingMiddleware)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api_cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization"],
        )
    return app
