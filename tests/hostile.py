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

from core.data.uploads import MAX_UPLOAD_BYTES


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


# ----- photo metadata: EXIF blocks and ICC profiles with damaged or mistyped entries

EXIF_TYPES = {"byte": 1, "ascii": 2, "short": 3, "long": 4, "rational": 5, "undefined": 7, "signed long": 9, "signed rational": 10}
# Tags Pillow reads or rewrites when it applies the orientation: orientation, resolution, sizes, offsets.
EXIF_TAGS = (0x0112, 0x011A, 0x011B, 0x0128, 0x0100, 0x0101, 0x8769, 0x8825, 0x0131, 0x0213, 0xA002, 0xA003)


def exif_block(entries: list[tuple[int, int, int, bytes]], *, big_endian: bool = False) -> bytes:
    """A raw EXIF segment (TIFF header and one IFD) whose entries are (tag, type, count, 4 value bytes),
    written exactly as given: nothing checks that a tag's type or count makes sense."""
    order = ">" if big_endian else "<"
    body = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(f"{order}I", 8) + struct.pack(f"{order}H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack(f"{order}HHI", tag, kind, count) + value.ljust(4, b"\x00")[:4]
    return b"Exif\x00\x00" + body + struct.pack(f"{order}I", 0)


def orientation_with_a_text_tag() -> bytes:
    """Orientation 6 (rotate) next to a resolution stored as text: applying the orientation makes
    Pillow rewrite the block and fail on the text (the case found by hand)."""
    return jpeg_bytes(exif=exif_block([(0x0112, 3, 1, struct.pack("<H", 6)), (0x011A, 2, 4, b"72\x00\x00")]))


def damaged_metadata_photo(rng: random.Random) -> bytes:
    """A valid photo whose EXIF entries have random tags, types, counts and values (orientation
    usually among them, so Pillow acts on the block), or whose ICC profile is junk."""
    image = Image.new("RGB", (rng.randint(8, 80), rng.randint(8, 80)), tuple(rng.randint(0, 255) for _ in range(3)))
    if rng.random() < 0.2:
        return jpeg_bytes(image, icc_profile=rng.randbytes(rng.randint(1, 600)))
    entries = [(0x0112, 3, 1, struct.pack("<H", rng.choice([1, 3, 6, 8, 9, 0, 65535])))] if rng.random() < 0.8 else []
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(list(EXIF_TYPES.values()) + [0, 13, 255])
        count = rng.choice([0, 1, 2, 4, rng.randint(5, 1 << 20), 0xFFFFFFFF])
        entries.append((rng.choice(EXIF_TAGS + (rng.randint(0, 0xFFFF),)), kind, count, rng.randbytes(4)))
    rng.shuffle(entries)
    return jpeg_bytes(image, exif=exif_block(entries, big_endian=rng.random() < 0.3))


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
    HostileUpload("exif-text.jpg", orientation_with_a_text_tag, "unreadable photo metadata"),
]

HOSTILE_TEXTS = {
    "empty": "",
    "whitespace": " \t\r\n\u00a0\u2003 \n",
    "100 KB": ("oak dining table with six chairs " * 3200)[:100_000],
    "emoji": "🛋️ sofa 👶🏽 pram 📱💥 — ça marche ✨",
    "right-to-left": "أريكة جلدية للبيع שולחן עץ אלון",
    "html": "<b>bold</b><img src=x onerror=alert(1)><style>body{display:none}</style>",
    "script": "<script>alert('xss')</script> sofa",
    "javascript link": '[cheap sofa](javascript:alert(document.cookie)) <a href="javascript:alert(1)">click</a>',
    "markdown": "# Heading **bold** _it_ `code` $x^2$ :red[red] :material/home: | a | b |\n---",
    "sql": "'; DROP TABLE products; -- \" OR 1=1; SELECT * FROM label_history",
    "fts5": 'sofa AND (chair OR NEAR(table desk, 2)) NOT "unbalanced * ^col: name:x {a b}:c -',
    "control characters": "so\x00fa\x07 ta\x1bble\ufeff\u200b\ud7ff",
    "lone quotes": "\"'\"'`",
}

MARKUP_TEXTS = ("html", "script", "javascript link", "markdown")


def write_markup_catalogue(folder: Path) -> Path:
    """A seed-format catalogue whose names, descriptions and locations are markup (products h0..h3, one photo each)."""
    from tests.helpers import image_row, photo, product_row, write_catalogue

    products = [
        product_row(
            f"h{index}",
            product_name=f"{HOSTILE_TEXTS[name]} sofa",
            product_description=f"sofa {HOSTILE_TEXTS[name]}",
            location=HOSTILE_TEXTS["javascript link"][:60],
        )
        for index, name in enumerate(MARKUP_TEXTS)
    ]
    images = [image_row(f"img{index}", f"h{index}") for index in range(len(MARKUP_TEXTS))]
    return write_catalogue(folder, products, images, photos={f"img{index}": photo() for index in range(len(MARKUP_TEXTS))})


def random_text(rng: random.Random) -> str:
    """Free text built from the hostile fragments above, random Unicode and operators; now and then
    nothing but punctuation and spaces (no word at all)."""
    if rng.random() < 0.12:
        return "".join(rng.choice(" \t\n\"'*()^:-+.,;!?<>[]{}") for _ in range(rng.randint(0, 40)))
    pieces = list(HOSTILE_TEXTS.values()) + ["AND", "OR", "NOT", "NEAR(", "*", '"', "(", ")", ":", "^", "--", ";", "%", "_", "\\"]
    parts = [rng.choice(pieces)[: rng.randint(0, 200)] for _ in range(rng.randint(1, 6))]
    parts.append(
        "".join(
            chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0x2FFF), rng.randint(0x1F300, 0x1FAFF)]))
            for _ in range(rng.randint(0, 30))
        )
    )
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
        del data[rng.randint(0, len(data) - 1) :]
    elif damage == "header":
        data[: rng.randint(2, 16)] = rng.randbytes(rng.randint(0, 16))
    elif damage == "junk":
        data = bytearray(rng.randbytes(rng.randint(0, 4000)))
    return bytes(data)


def is_top_of_a_distribution(top: list[tuple[str, float]]) -> bool:
    """Five distinct classes, probabilities descending, each in [0, 1], summing to at most 1."""
    probabilities = [probability for _, probability in top]
    return (
        len({label for label, _ in top}) == 5
        and probabilities == sorted(probabilities, reverse=True)
        and all(0 <= p <= 1 for p in probabilities)
        and sum(probabilities) <= 1 + 1e-5
    )


# ----- CSV fields an import must skip (or accept) row by row


def hostile_field(rng: random.Random, column: str) -> str:
    """One hostile value for a Products.csv column."""
    if column == "price":
        return rng.choice(
            [
                "£99999999999999999999",
                "£" + "9" * 400,
                "£1e309",
                "-£5.00",
                "£0.001",
                "NaN",
                "£1,2,3",
                "£" + "1," * 300 + "000",
                "£9,223,372,036,854,775,807",
                "\x00£5",
                "£ 5 . 00",
                "",
            ]
        )
    if column == "category":
        return rng.choice(
            [
                " / ".join(f"level{index}" for index in range(rng.randint(50, 3000))),
                " / " * 500,
                "/" * 1000,
                "A / " + "x" * 20_000,
                "\x00 / \x1b[2J",
                "Home & Garden / Ham/Amateur Radios",
                " / Other /  / ",
            ]
        )
    return rng.choice(
        [
            "x" * rng.randint(1_000, 200_000),
            "\x00\x01\x1b[2J\x7f",
            "\u202e\u2066evil",
            "Name | in Town | Gumtree" * 200,
            "\ud7ff\ufffd\U0010ffff",
            "'; DROP TABLE products; --",
            "<script>alert(1)</script>",
            "\r\r\r",
            "",
        ]
    )
