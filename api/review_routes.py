"""The labelling review over HTTP: the queue of likely mislabelled products, and label changes checked
against the label version the caller saw (the app's optimistic locking), recorded with source `api`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.docs import answer
from api.problems import ApiProblem
from api.security import reader, writer
from core.enums import LabelSource
from services.review import StaleLabelError, fix_label
from services.review_queue import ReviewError, UnknownProduct, queue_json

router = APIRouter(tags=["review"])

QUEUE_EXAMPLE = {
    "items": [
        {
            "product_id": "b4c2e0b4-3f57-4c5f-a5d4-0b8f1f0f3c11",
            "name": "Garden bench",
            "current": "Baby & Kids Stuff",
            "suggested": "Home & Garden",
            "score": 0.012345,
        }
    ]
}


class LabelChange(BaseModel):
    category: str = Field(max_length=500, description="the new category path", examples=["Home & Garden / Garden & Patio"])
    label_version: int = Field(ge=1, description="the product's label_version when the caller read it (GET /products/{id})")
    reason: str = Field(default="", max_length=300, description="why, for the label history")


@router.get(
    "/review-queue",
    dependencies=[Depends(reader)],
    responses=answer(QUEUE_EXAMPLE, "worst label first"),
    summary="The products most likely mislabelled, worst first",
)
async def review_queue(request: Request, limit: Annotated[int, Query(ge=1, le=1_000)] = 50) -> dict[str, list[dict[str, object]]]:
    """The queue as last scored (`python -m core review-queue --refresh` or the Review page rescore it)."""
    return await run_in_threadpool(queue_json, request.app.state.engine, limit=limit)


@router.post(
    "/products/{product_id}/label",
    responses=answer(
        {"id": "b4c2e0b4-3f57-4c5f-a5d4-0b8f1f0f3c11", "category": "Home & Garden / Garden & Patio", "label_version": 2},
        "the label changed",
        errors={409: "someone changed the label since the caller read it"},
    ),
    summary="Change a product's category (needs an API key)",
)
async def change_label(
    request: Request, product_id: str, change: LabelChange, holder: Annotated[str, Depends(writer)]
) -> dict[str, object]:
    try:
        version = await run_in_threadpool(
            fix_label,
            request.app.state.engine,
            product_id[:100],
            new_category=" ".join(change.category.split()),
            changed_by=holder,
            seen_version=change.label_version,
            reason=change.reason.strip() or "changed through the API",
            source=LabelSource.API,
        )
    except StaleLabelError as error:
        raise ApiProblem(409, f"{error}; read the product again for its label_version", field="label_version") from error
    except UnknownProduct as error:
        raise ApiProblem(404, str(error), field="product_id") from error
    except ReviewError as error:
        raise ApiProblem(422, str(error), field="category") from error
    return {"id": product_id, "category": " ".join(change.category.split()), "label_version": version}
