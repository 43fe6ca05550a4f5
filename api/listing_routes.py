"""`POST /listings`: add a listing with its photos, as the Classify page does: the models judge it (a
listing filed under a category they doubt joins the review queue), and it is saved all or nothing."""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from api.docs import answer
from api.inputs import checked_text, open_photos, read_photos
from api.problems import ApiProblem, log
from api.security import writer
from core.data.cleaning import CATEGORY_SEPARATOR, parse_price, split_category
from core.data.images import ImageError
from core.data.uploads import MAX_TEXT_CHARS
from core.enums import LabelSource
from core.inference.category_classifier import NothingToClassify
from core.models.manifest import ModelFileError
from services.listings import MAX_NAME_CHARS, ListingError, NewListing, UploadedPhoto, add_listing, judged_by

router = APIRouter(tags=["listings"])

ADDED_EXAMPLE = {
    "id": "5b0c6f1e9a3d4c7e8f2a1b3c4d5e6f70",
    "url": "/products/5b0c6f1e9a3d4c7e8f2a1b3c4d5e6f70",
    "category": "Home & Garden",
    "predicted_category": "Home & Garden",
    "confidence": 0.9693,
    "queued_for_review": False,
}


@router.post(
    "/listings",
    status_code=201,
    responses=answer(ADDED_EXAMPLE, "the listing was added", status=201),
    summary="Add a listing with photos (needs an API key)",
)
async def add(
    request: Request,
    holder: Annotated[str, Depends(writer)],
    name: Annotated[str, Form(description="the listing's title", examples=["Oak dining table with four chairs"])],
    category: Annotated[str, Form(max_length=500, description="an existing category path", examples=["Home & Garden"])],
    price: Annotated[str, Form(max_length=40, description="pounds, e.g. 120 or £1,250.00", examples=["120"])],
    description: Annotated[str, Form()] = "",
    location: Annotated[str, Form(max_length=200, examples=["Leeds, West Yorkshire"])] = "",
    photos: Annotated[list[UploadFile] | None, File(description="up to 8 photos, 10 MB each")] = None,
) -> dict[str, object]:
    received = await read_photos(photos)
    listing = NewListing(
        name=checked_text(name, field="name", limit=MAX_NAME_CHARS, required=True),
        description=checked_text(description, field="description", limit=MAX_TEXT_CHARS),
        price=_price(price),
        location=location,
        category=category,
        photos=[UploadedPhoto(photo.name, photo.data) for photo in received],
    )
    settings, resources = request.app.state.settings, request.app.state.resources

    def work() -> NewListing:
        images = open_photos(received)  # a bad photo refuses the listing before anything is written
        try:
            prediction = resources.classifier().classify(images=images, text=f"{name}\n{description}")
        except (NothingToClassify, ModelFileError) as error:  # saved all the same, as the page would
            log.warning("listing added without the models' verdict: %s", error)
            return listing
        return judged_by(listing, prediction)

    judged = await request.app.state.model_worker.run(work)
    save = partial(add_listing, media_dir=settings.media_dir, added_by=holder, image_size=settings.image_size, source=LabelSource.API)
    try:
        product_id = await run_in_threadpool(save, resources.engine, judged)
    except ImageError as error:
        raise ApiProblem(422, str(error), field="photos") from error
    except ListingError as error:
        raise ApiProblem(422, str(error), field=error.field) from error
    return {
        "id": product_id,
        "url": f"/products/{product_id}",
        "category": CATEGORY_SEPARATOR.join(split_category(category)),
        "predicted_category": judged.predicted_category,
        "confidence": None if judged.confidence is None else round(judged.confidence, 4),
        "queued_for_review": judged.needs_review,
    }


def _price(text: str) -> Decimal:
    try:
        return parse_price(text)
    except ValueError as error:
        raise ApiProblem(422, str(error), field="price") from error
