"""`POST /classify` (photos and/or text: the combined model where both are given) and the original
project's three: `/classify/image`, `/classify/text`, `/classify/combined`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse  # the answer is plain JSON already: no response model to validate it against

from api.docs import answer
from api.inputs import checked_text, open_photos, read_photos
from api.problems import ApiProblem, log
from api.security import reader
from core.data.cleaning import model_text
from core.data.uploads import MAX_TEXT_CHARS
from core.enums import ModelKind
from core.inference.category_classifier import NothingToClassify, Prediction
from core.models.manifest import ModelFileError

router = APIRouter(tags=["classify"], dependencies=[Depends(reader)])

PREDICTION_EXAMPLE = {
    "category": "Home & Garden",
    "model": "combined",
    "top": [
        {"category": "Home & Garden", "probability": 0.9693},
        {"category": "Other Goods", "probability": 0.0057},
        {"category": "Clothes, Footwear & Accessories", "probability": 0.0051},
        {"category": "Baby & Kids Stuff", "probability": 0.0033},
        {"category": "DIY Tools & Materials", "probability": 0.0032},
    ],
    "confident": True,
    "prediction_set": ["Home & Garden"],
}
ANSWER = answer(
    PREDICTION_EXAMPLE,
    "the category and the five most likely; `confident` when the model's calibrated probability reaches its threshold "
    "(95% accurate on validation), else `prediction_set` is the short list that holds the category 90% of the time",
)
Photos = Annotated[list[UploadFile] | None, File(description="up to 8 photos of the item, 10 MB each")]
Text = Annotated[str | None, Form(description="title and/or description", examples=["Oak dining table with four chairs"])]


async def _classify(request: Request, photos: list[UploadFile] | None, text: str | None, *, needs: tuple[str, ...] = ()) -> Prediction:
    received = await read_photos(photos)
    words = checked_text(text, field="text", limit=MAX_TEXT_CHARS)
    if "photos" in needs and not received:
        raise ApiProblem(422, "this model needs at least one photo", field="photos")
    if "text" in needs and not model_text("", words):
        raise ApiProblem(422, "this model needs a text with words in it", field="text")
    resources = request.app.state.resources

    def work() -> Prediction:
        try:
            return resources.classifier().classify(images=open_photos(received), text=words)
        except NothingToClassify as error:
            raise ApiProblem(422, str(error), field="text") from error
        except ModelFileError as error:
            log.error("the models cannot be loaded: %s", error)
            raise ApiProblem(503, "the models cannot be loaded; the server log says why") from error

    prediction: Prediction = await request.app.state.model_worker.run(work)
    return prediction


@router.post("/classify", responses=ANSWER, summary="The category of a listing from its photos and/or text")
async def classify(request: Request, photos: Photos = None, text: Text = None) -> JSONResponse:
    """The combined model when photos and text are given, else the model that can answer."""
    return JSONResponse((await _classify(request, photos, text)).as_json())


@router.post("/classify/image", responses=ANSWER, summary="The image model's answer from photos")
async def classify_image(request: Request, photos: Photos = None) -> JSONResponse:
    return JSONResponse((await _classify(request, photos, None, needs=("photos",))).of_model(ModelKind.IMAGE).as_json())


@router.post("/classify/text", responses=ANSWER, summary="The text model's answer from a title and description")
async def classify_text(request: Request, text: Text = None) -> JSONResponse:
    return JSONResponse((await _classify(request, None, text, needs=("text",))).of_model(ModelKind.TEXT).as_json())


@router.post("/classify/combined", responses=ANSWER, summary="The combined model's answer from photos and text together")
async def classify_combined(request: Request, photos: Photos = None, text: Text = None) -> JSONResponse:
    return JSONResponse((await _classify(request, photos, text, needs=("photos", "text"))).of_model(ModelKind.COMBINED).as_json())
