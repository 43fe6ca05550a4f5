"""Opening and cleaning photos (the seed's `CleanImages`), safe against hostile files."""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from core.runtime.processes import process_alive

# Refuse before decoding: a 20000x20000 PNG is a few KB on disk and 1.2 GB in memory.
MAX_IMAGE_PIXELS = 40_000_000
MB = 1024 * 1024
MAX_PHOTO_FILE_BYTES = 50 * MB  # a catalogue photo file; uploads have their own, lower limit (core.data.uploads)
DEFAULT_CANVAS_SIZE = 512


class ImageError(ValueError):
    """A file that cannot be used as a photo; the message says why, for a user to read."""


def open_image(
    source: str | Path | bytes | BinaryIO,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_PHOTO_FILE_BYTES,
    name: str | None = None,
) -> Image.Image:
    """Open, check size, fully decode, fix EXIF orientation and convert to RGB.

    A path is read only if it is a regular file of at most `max_bytes` (a FIFO would block, a huge
    file would take minutes). Any failure while reading the photo, its metadata (EXIF, ICC profile)
    or its pixels raises ImageError with a one-line reason naming the file.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "upload")
    if isinstance(source, (str, Path)):
        source = read_photo_file(Path(source), max_bytes=max_bytes, label=label)
    if isinstance(source, bytes):
        if not source:
            raise ImageError(f"{label}: the file is empty")
        if len(source) > max_bytes:
            raise ImageError(f"{label}: {len(source) / MB:.1f} MB is over the {max_bytes / MB:.0f} MB limit per photo")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on skipped metadata tags
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"{label}: {width}x{height} pixels is over the limit of {max_pixels:,} pixels")
            image.seek(0)  # first frame of an animation
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{label}: too many pixels, over the limit of {max_pixels:,} pixels") from error
    except UnidentifiedImageError as error:
        raise ImageError(f"{label}: not a readable image (unknown or unsupported format)") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{label}: corrupt or truncated image ({error})") from error
    except Exception as error:  # noqa: BLE001 - a decoder's own bug on a hostile file is still this file's refusal
        raise ImageError(f"{label}: unreadable image ({type(error).__name__}: {error})") from error
    if width < 1 or height < 1:
        raise ImageError(f"{label}: image has no pixels")
    try:
        # Pillow rewrites the EXIF block when it applies the orientation: a mistyped or damaged
        # entry fails there with TypeError, struct.error, ValueError... whatever the entry provokes.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on skipped tags: the photo is used or refused, never both
            oriented = ImageOps.exif_transpose(image)
    except Exception as error:  # noqa: BLE001 - see above
        raise ImageError(f"{label}: unreadable photo metadata ({type(error).__name__}: {error})") from error
    try:
        return to_rgb(oriented)
    except Exception as error:  # noqa: BLE001 - e.g. a damaged ICC profile or palette
        raise ImageError(f"{label}: its colours cannot be read ({type(error).__name__}: {error})") from error


def read_photo_file(path: Path, *, max_bytes: int = MAX_PHOTO_FILE_BYTES, label: str | None = None) -> bytes:
    """The bytes of a photo file, checked before reading: a regular file (not a FIFO, device or
    folder) of at most `max_bytes`. Raises ImageError naming the file."""
    label = label or str(path)
    try:
        status = path.stat()
    except FileNotFoundError as error:
        raise ImageError(f"{label}: file not found") from error
    except OSError as error:
        raise ImageError(f"{label}: cannot be read ({error.strerror or error})") from error
    if not stat.S_ISREG(status.st_mode):
        raise ImageError(f"{label}: not a regular file")
    if status.st_size > max_bytes:
        raise ImageError(f"{label}: {status.st_size / MB:.1f} MB is over the {max_bytes / MB:.0f} MB limit per photo")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageError(f"{label}: cannot be read ({error.strerror or error})") from error


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB on a black background; 16-bit and CMYK images converted properly."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale down to 8 bits instead of clipping at 255.
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def clean_image(image: Image.Image, *, size: int = DEFAULT_CANVAS_SIZE, upscale: bool = False) -> Image.Image:
    """Fit inside a square canvas keeping the aspect ratio, centred on black (as the data set is).

    Smaller photos are not enlarged unless `upscale=True`: the canvas is then the photo's own
    longest side, so no pixels are invented silently.
    """
    image = to_rgb(image)
    longest = max(image.size)
    canvas_size = size if (upscale or longest >= size) else longest
    scale = canvas_size / longest
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (canvas_size, canvas_size), (0, 0, 0))
    canvas.paste(image, ((canvas_size - new_size[0]) // 2, (canvas_size - new_size[1]) // 2))
    return canvas


def save_cleaned(image: Image.Image, target: Path, *, size: int = DEFAULT_CANVAS_SIZE) -> None:
    """The cleaned photo as a JPEG at `target`, written atomically: a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    clean_image(image, size=size).save(temporary, format="JPEG", quality=90)
    os.replace(temporary, target)


def remove_partial_files(folder: Path) -> int:
    """Delete the temporary files that `save_cleaned` writers killed part-way left behind (their
    process is gone); a live writer's files are kept. Returns how many were removed."""
    removed = 0
    for temporary in folder.rglob("*.tmp") if folder.is_dir() else ():
        pid = temporary.suffixes[-2].lstrip(".") if len(temporary.suffixes) >= 2 else ""
        if pid.isdigit() and process_alive(int(pid)):
            continue
        temporary.unlink(missing_ok=True)
        removed += 1
    return removed


def media_path_for(image_id: str) -> str:
    """Where a photo's cleaned copy lives, relative to the media folder (two-level fan-out)."""
    return f"{image_id[:2]}/{image_id}.jpg"
