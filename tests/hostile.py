"""Hostile and broken inputs, generated (never copied from the data set): photo files that are corrupt,
truncated, mislabelled, empty, decompression bombs or merely unusual, and text that tries Markdown,
HTML, SQL and FTS5 syntax. Shared by the hostile-input and fuzz tests."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from core.uploads import MAX_UPLOAD_BYTES


def jpeg_bytes(image: Image.Image | None = None, **options: object) -> bytes:
    buffer = io.BytesIO()
    (image or Image.new("RGB", (96, 64), (180, 40, 40))).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def decompression_bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A complete, valid 1-bit PNG of width x height black pixels: about 60 KB on disk, 1.2 GB as RGB."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def corrupt_jpeg() -> bytes:
    """A real JPEG's headers followed by noise where the scan data should be."""
    original = jpeg_bytes(Image.effect_noise((96, 64), 60).convert("RGB"))
    noise = random.Random(7).randbytes(len(original) - 200)
    return original[:160] + b"\xff\xda" + noise


def truncated_png() -> bytes:
    full = png_bytes(Image.effect_noise((128, 128), 80).convert("RGB"))
    return full[: len(full) // 2]


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (60, 40), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def cmyk_jpeg() -> bytes:
    return jpeg_bytes(Image.new("CMYK", (80, 60), (0, 255, 255, 0)))  # pure red in CMYK


def sixteen_bit_png() -> bytes:
    return png_bytes(Image.new("I;16", (70, 50), 50_000))


def exif_rotated_jpeg() -> bytes:
    """Stored 90x40 (landscape) with EXIF orientation 6: shown (and to be used) as 40x90 portrait."""
    landscape = Image.new("RGB", (90, 40), (20, 160, 20))
    exif = landscape.getexif()
    exif[0x0112] = 6
    return jpeg_bytes(landscape, exif=exif.tobytes())


def oversized_jpeg() -> bytes:
    """A JPEG padded past the upload limit (a comment segment cannot hold it all: trailing bytes do)."""
    return jpeg_bytes() + b"\x00" * (MAX_UPLOAD_BYTES + 1)


@dataclass(frozen=True)
class HostileUpload:
    name: str  # the file name the user's browser sends
    make: Callable[[], bytes]
    refusal: str | None  # words the refusal message must hold; None: the photo must be accepted
    size: tuple[int, int] | None = None  # accepted photos: the size once opened (EXIF applied)


HOSTILE_UPLOADS = [
    HostileUpload("corrupt.jpg", corrupt_jpeg, "corrupt or truncated"),
    HostileUpload("truncated.png", truncated_png, "corrupt or truncated"),
    HostileUpload("notes.jpg", lambda: b"Dear buyer,\nthis is a text file renamed to .jpg\n", "not a readable image"),
    HostileUpload("empty.jpg", lambda: b"", "empty"),
    HostileUpload("bomb.png", decompression_bomb_png, "over the limit"),
    HostileUpload("huge.jpg", oversized_jpeg, "over the 10 MB limit"),
    HostileUpload("animated.gif", animated_gif, None, (60, 40)),
    HostileUpload("cmyk.jpg", cmyk_jpeg, None, (80, 60)),
    HostileUpload("sixteen-bit.png", sixteen_bit_png, None, (70, 50)),
    HostileUpload("rotated.jpg", exif_rotated_jpeg, None, (40, 90)),
]

HOSTILE_TEXTS = {
    "empty": "",
    "whitespace": " \t\r\n\u00a0\u2003 \n",
    "100 KB": ("oak dining table with six chairs " * 3200)[:100_000],
    "emoji": "🛋️ sofa 👶🏽 pram 📱💥 — ça marche ✨",
    "right-to-left": "أريكة جلدية للبيع שולחן עץ אלון",
    "html": "<b>bold</b><img src=x onerror=alert(1)><style>body{display:none}</style>",
    "script": "<script>alert('xss')</script> sofa",
    "javascript link": "[cheap sofa](javascript:alert(document.cookie)) <a href=\"javascript:alert(1)\">click</a>",
    "markdown": "# Heading **bold** _it_ `code` $x^2$ :red[red] :material/home: | a | b |\n---",
    "sql": "'; DROP TABLE products; -- \" OR 1=1; SELECT * FROM label_history",
    "fts5": 'sofa AND (chair OR NEAR(table desk, 2)) NOT "unbalanced * ^col: name:x {a b}:c -',
    "control characters": "so\x00fa\x07 ta\x1bble\ufeff\u200b\ud7ff",
    "lone quotes": "\"'\"'`",
}

MARKUP_TEXTS = ("html", "script", "javascript link", "markdown")


def write_markup_catalogue(folder: Path) -> Path:
    """A seed-format catalogue whose names, descriptions and locations are markup (products h0..h3, one photo each)."""
    from tests.conftest import image_row, photo, product_row, write_catalogue

    products = [product_row(f"h{index}", product_name=f"{HOSTILE_TEXTS[name]} sofa", product_description=f"sofa {HOSTILE_TEXTS[name]}",
                            location=HOSTILE_TEXTS["javascript link"][:60])
                for index, name in enumerate(MARKUP_TEXTS)]
    images = [image_row(f"img{index}", f"h{index}") for index in range(len(MARKUP_TEXTS))]
    return write_catalogue(folder, products, images, photos={f"img{index}": photo() for index in range(len(MARKUP_TEXTS))})


def random_text(rng: random.Random) -> str:
    """Free text built from the hostile fragments above, random Unicode and operators; now and then
    nothing but punctuation and spaces (no word at all)."""
    if rng.random() < 0.12:
        return "".join(rng.choice(" \t\n\"'*()^:-+.,;!?<>[]{}") for _ in range(rng.randint(0, 40)))
    pieces = list(HOSTILE_TEXTS.values()) + ["AND", "OR", "NOT", "NEAR(", "*", '"', "(", ")", ":", "^", "--", ";", "%", "_", "\\"]
    parts = [rng.choice(pieces)[: rng.randint(0, 200)] for _ in range(rng.randint(1, 6))]
    parts.append("".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0x2FFF), rng.randint(0x1F300, 0x1FAFF)]))
                         for _ in range(rng.randint(0, 30))))
    rng.shuffle(parts)
    return " ".join(parts)


def mutated_photo(rng: random.Random) -> bytes:
    """A generated photo with random damage: bit flips, truncation, a swapped header or junk."""
    image = Image.new("RGB", (rng.randint(1, 120), rng.randint(1, 120)), tuple(rng.randint(0, 255) for _ in range(3)))
    data = bytearray(jpeg_bytes(image) if rng.random() < 0.6 else png_bytes(image))
    damage = rng.choice(["flip", "truncate", "header", "junk", "none"])
    if damage == "flip":
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif damage == "truncate":
        del data[rng.randint(0, len(data) - 1):]
    elif damage == "header":
        data[: rng.randint(2, 16)] = rng.randbytes(rng.randint(0, 16))
    elif damage == "junk":
        data = bytearray(rng.randbytes(rng.randint(0, 4000)))
    return bytes(data)


def is_top_of_a_distribution(top: list[tuple[str, float]]) -> bool:
    """Five distinct classes, probabilities descending, each in [0, 1], summing to at most 1."""
    probabilities = [probability for _, probability in top]
    return (len({label for label, _ in top}) == 5 and probabilities == sorted(probabilities, reverse=True)
            and all(0 <= p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-5)
