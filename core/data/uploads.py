"""Reading photos a user uploads: size-checked before decoding, each bad file explained, the
good ones kept (one corrupt photo never loses the others)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from core.data.images import ImageError, open_image

MAX_UPLOAD_MB = 10
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_PHOTOS = 8
UPLOAD_TYPES = ("jpg", "jpeg", "png", "webp", "gif")  # GIF: the first frame of an animation
MAX_TEXT_CHARS = 20_000  # a listing's title and description, as the CLI and the HTTP API take them
MAX_QUERY_CHARS = 1_000  # a search query


@dataclass(frozen=True)
class ReadPhotos:
    photos: list[Image.Image]
    files: list[tuple[str, bytes]]  # (name, bytes) of the photos that opened, in the same order
    problems: list[str]  # one sentence per refused file


def read_uploaded_photos(
    files: Sequence[tuple[str, bytes]], *, max_bytes: int = MAX_UPLOAD_BYTES, max_photos: int = MAX_PHOTOS
) -> ReadPhotos:
    photos: list[Image.Image] = []
    kept: list[tuple[str, bytes]] = []
    problems: list[str] = []
    for name, data in files:
        if len(kept) >= max_photos:
            problems.append(f"{name}: only the first {max_photos} photos are used")
            continue
        try:
            photos.append(open_image(data, name=name, max_bytes=max_bytes))  # the size is checked before decoding
        except ImageError as error:
            problems.append(str(error))
            continue
        kept.append((name, data))
    return ReadPhotos(photos, kept, problems)
