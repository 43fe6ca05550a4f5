"""Text for a terminal: a file name or a listing's field printed as it is can clear the screen,
move the cursor or reverse the text that follows (ANSI escapes, carriage returns, bidi controls),
so every line the CLI prints from data passes through `printable`."""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    if character in _NAMED:
        return _NAMED[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with control, line-breaking and direction-changing characters shown as escapes
    (\\x1b, \\r, \\u202e...): one line, shown as written."""
    escaped = _UNSAFE.sub(_escape, text)
    # Other format characters (zero-width joiners and the like) are harmless but invisible: shown too.
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) == "Cf" and c not in "\u200d" else c for c in escaped)
