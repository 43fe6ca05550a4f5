"""Search helpers that need no database: query parsing and FTS5 escaping."""

from __future__ import annotations

import re

# FTS5's unicode61 tokenizer keeps letters and digits and splits on everything else
# (underscores included), so mirroring it here makes every user string a valid query.
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_TERMS = 32
MATCH_START, MATCH_END = "\x02", "\x03"  # around matched words in a result's snippet (never typed by a user)


def query_terms(text: str) -> list[str]:
    """The words of a user query, lower-cased, de-duplicated, in order, at most 32 (reading stops
    there: a query of 40,000 distinct words costs no more than one of 32)."""
    terms: dict[str, None] = {}
    for match in _TOKEN.finditer(text or ""):
        terms.setdefault(match.group().lower())
        if len(terms) == MAX_QUERY_TERMS:
            break
    return list(terms)


def fts_match_expression(text: str, *, any_term: bool = False) -> str | None:
    """An FTS5 MATCH expression for any user string, or None when it holds no searchable word.

    Every term is a quoted string, so FTS5 operators (AND, OR, NOT, NEAR, *, ^, column filters,
    parentheses) typed by a user are searched as words, never interpreted.
    """
    terms = query_terms(text)
    if not terms:
        return None
    return (" OR " if any_term else " ").join(f'"{term}"' for term in terms)
