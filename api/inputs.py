"""Reading a request's photos and text with the app's limits: at most 8 photos of 10 MB, the pixel
limit checked before decoding, texts within their lengths; each refusal names the field."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import UploadFile
from fastapi.concurrency import run_in_threadpool
from PIL import Image

from api.problems import ApiProblem
from core.data.images import ImageError, open_image
from core.data.uploads import MAX_PHOTOS, MAX_UPLOAD_BYTES, MAX_UPLOAD_MB


@dataclass(frozen=True)
class ReceivedPhoto:
    name: str
    data: bytes
    image: Image.Image


async def read_photos(files: list[UploadFile] | None, *, field: str = "photos") -> list[ReceivedPhoto]:
    """Every photo opened, or a 413/422 problem naming the first one that is not (nothing is kept)."""
    files = [file for file in files or [] if file.filename or file.size]
    if len(files) > MAX_PHOTOS:
        raise ApiProblem(422, f"at most {MAX_PHOTOS} photos per request ({len(files)} sent)", field=field)
    received = []
    for file in files:
        name = (file.filename or "photo")[:200]
        data = await file.read(MAX_UPLOAD_BYTES + 1)  # never more than the limit and one byte into memory
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiProblem(413, f"{name}: over the {MAX_UPLOAD_MB} MB limit for a photo", field=field)
        try:
            image = await run_in_threadpool(open_image, data, name=name, max_bytes=MAX_UPLOAD_BYTES)
        except ImageError as error:
            raise ApiProblem(422, str(error), field=field) from error
        received.append(ReceivedPhoto(name, data, image))
    return received


def checked_text(text: str | None, *, field: str, limit: int, required: bool = False) -> str:
    """`text` as given (or ""), refused when over `limit` characters, or blank where it is `required`."""
    text = text or ""
    if len(text) > limit:
        raise ApiProblem(422, f"{field} is {len(text):,} characters long; the limit is {limit:,}", field=field)
    if required and not text.strip():
        raise ApiProblem(422, f"give a {field}", field=field)
    return text
