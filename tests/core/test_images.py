import io
import struct
import zlib

import pytest
from PIL import Image

from core.data.images import ImageError, clean_image, open_image
from tests.hostile import jpeg_bytes, png_bytes


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: the header is all a bomb check may read."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_open_image_converts_alpha_onto_black() -> None:
    image = open_image(png_bytes(Image.new("RGBA", (4, 4), (255, 0, 0, 0))))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (0, 0, 0)


def test_open_image_applies_exif_rotation() -> None:
    landscape = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = landscape.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    image = open_image(jpeg_bytes(landscape, exif=exif.tobytes()))
    assert image.size == (20, 40)


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "I;16"])
def test_open_image_converts_other_modes_to_rgb(mode: str) -> None:
    source = Image.new("RGB", (8, 8), (120, 60, 30)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        source = Image.new("I;16", (8, 8), 40000)
    buffer = io.BytesIO()
    source.save(buffer, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    image = open_image(buffer.getvalue())
    assert image.mode == "RGB"
    if mode == "I;16":
        assert image.getpixel((0, 0))[0] == 40000 // 256


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"this is a text file, not a photo", "not a readable image"),
        (jpeg_bytes(Image.new("RGB", (64, 64)))[:200], "corrupt or truncated"),
        (_png_header_only(20000, 20000), "over the limit"),
    ],
)
def test_open_image_refuses_bad_files_with_a_reason(payload: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message) as caught:
        open_image(payload, name="photo.jpg")
    assert str(caught.value).startswith("photo.jpg:")


def test_open_image_names_a_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageError, match="file not found"):
        open_image(tmp_path / "nope.jpg")


def test_clean_image_pads_to_a_square_without_upscaling() -> None:
    cleaned = clean_image(Image.new("RGB", (200, 100), (255, 255, 255)), size=512)
    assert cleaned.size == (200, 200)  # not enlarged to 512
    assert cleaned.getpixel((100, 10)) == (0, 0, 0)  # padding above the photo
    assert cleaned.getpixel((100, 100)) == (255, 255, 255)


def test_clean_image_shrinks_large_photos_and_upscales_only_when_asked() -> None:
    assert clean_image(Image.new("RGB", (1024, 512)), size=512).size == (512, 512)
    assert clean_image(Image.new("RGB", (100, 50)), size=256, upscale=True).size == (256, 256)
    assert clean_image(Image.new("RGB", (1, 1)), size=512).size == (1, 1)
