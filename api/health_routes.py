"""`GET /healthz` (the process answers) and `GET /readyz` (the database answers, the models are loaded
and their checksums good): what a load balancer or an orchestrator asks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.docs import answer
from api.problems import log
from core.models.manifest import ModelFileError
from services.catalogue import catalogue_size

router = APIRouter(tags=["health"])

READY_EXAMPLE = {"status": "ready", "database": {"products": 6082, "photos": 10732}, "models": {"labels": 13, "folder": "models"}}


@router.get("/healthz", responses=answer({"status": "ok"}, "the process answers"), summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses=answer(READY_EXAMPLE, "ready", errors={503: "not ready: what is wrong, per part"}),
    summary="The database answers and the models are loaded",
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    report: dict[str, object] = {}
    ready = True
    try:
        products, photos = await run_in_threadpool(catalogue_size, state.engine)
        report["database"] = {"products": products, "photos": photos}
    except Exception as error:  # noqa: BLE001 - any database failure means not ready; the log has the details
        log.error("readiness: the database does not answer: %s", error)
        report["database"], ready = {"error": f"the database does not answer ({type(error).__name__})"}, False
    try:
        classifier = await run_in_threadpool(state.resources.classifier)  # loads once; a damaged file fails its checksum here
        report["models"] = {"labels": len(classifier.labels), "folder": state.settings.models_dir.name}
    except ModelFileError as error:
        log.error("readiness: the models cannot be loaded: %s", error)
        report["models"], ready = {"error": "the models cannot be loaded; the server log says why"}, False
    return JSONResponse({"status": "ready" if ready else "not ready", **report}, status_code=200 if ready else 503)
