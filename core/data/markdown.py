"""Showing user text safely in Markdown: everything a seller typed is shown as text."""

from __future__ import annotations

import re

# Markdown and Streamlit's own syntax (:color[...], :material/icon:, $LaTeX$) plus HTML brackets.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&])")


def escape_markdown(text: str) -> str:
    """Backslash-escape every character Markdown or Streamlit could interpret; new lines folded."""
    return _SPECIAL.sub(r"\\\1", " ".join((text or "").split()))


def highlight_markdown(text: str, *, start: str, end: str) -> str:
    """Escape `text` and turn the `start`...`end` markers around matched words into bold."""
    escaped = escape_markdown(text)
    return escaped.replace(escape_markdown(start), "**").replace(escape_markdown(end), "**")
