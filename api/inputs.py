"""Reading a request's photos and text with the app's limits: at most 8 photos of 10 MB, the pixel
limit checked before decoding, texts within their lengths; each refusal names the field."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import UploadFile
from PIL import Image

from api.problems import ApiProblem
from core.data.images import ImageError, open_image
from core.data.uploads import MAX_PHOTOS, MAX_UPLOAD_BYTES, MAX_UPLOAD_MB


@dataclass(frozen=True)
class ReceivedPhoto:
    name: str
    data: bytes
    field: str

    def open(self) -> Image.Image:
        """Decoded (pixel limit checked first), or a 422 problem naming the photo. Called in the thread that
        then runs the model on it: decoding elsewhere costs a thread hop and a cold cache per photo."""
        try:
            return open_image(self.data, name=self.name, max_bytes=MAX_UPLOAD_BYTES)
        except ImageError as error:
            raise ApiProblem(422, str(error), field=self.field) from error


def open_photos(photos: list[ReceivedPhoto]) -> list[Image.Image]:
    return [photo.open() for photo in photos]


async def read_photos(files: list[UploadFile] | None, *, field: str = "photos") -> list[ReceivedPhoto]:
    """Every photo received within the limits (count, bytes), or a 413/422 problem naming the field."""
    files = [file for file in files or [] if file.filename or file.size]
    if len(files) > MAX_PHOTOS:
        raise ApiProblem(422, f"at most {MAX_PHOTOS} photos per request ({len(files)} sent)", field=field)
    received = []
    for file in files:
        name = (file.filename or "photo")[:200]
        data = await file.read(MAX_UPLOAD_BYTES + 1)  # never more than the limit and one byte into memory
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiProblem(413, f"{name}: over the {MAX_UPLOAD_MB} MB limit for a photo", field=field)
        received.append(ReceivedPhoto(name, data, field))
    return received


def checked_text(text: str | None, *, field: str, limit: int, required: bool = False) -> str:
    """`text` as given (or ""), refused when over `limit` characters, or blank where it is `required`."""
    text = text or ""
    if len(text) > limit:
        raise ApiProblem(422, f"{field} is {len(text):,} characters long; the limit is {limit:,}", field=field)
    if required and not text.strip():
        raise ApiProblem(422, f"give a {field}", field=field)
    return text
