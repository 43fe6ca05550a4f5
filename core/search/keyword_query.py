"""Search helpers that need no database: query parsing and FTS5 escaping."""

from __future__ import annotations

import re

# FTS5's unicode61 tokenizer keeps letters and digits and splits on everything else
# (underscores included), so mirroring it here makes every user string a valid query.
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_TERMS = 32
MATCH_START, MATCH_END = "\x02", "\x03"  # around matched words in a result's snippet (never typed by a user)
# Function words: when no product holds every word of a query, the any-word fallback leaves these out
# (matching "the" alone finds every listing and ranks none), unless the query holds nothing else.
STOP_WORDS = frozenset(
    "a about all also an and any are as at be been but by can could did do does for from had has have he her his how i if in "
    "into is it its just me my no not of on or our out over she so some than that the their them then there these they this "
    "to too up us very was we were what when where which who why will with would you your".split()
)


def query_terms(text: str) -> list[str]:
    """The words of a user query, lower-cased, de-duplicated, in order, at most 32 (reading stops
    there: a query of 40,000 distinct words costs no more than one of 32)."""
    terms: dict[str, None] = {}
    for match in _TOKEN.finditer(text or ""):
        terms.setdefault(match.group().lower())
        if len(terms) == MAX_QUERY_TERMS:
            break
    return list(terms)


def fallback_terms(terms: list[str]) -> list[str]:
    """The terms the any-word fallback searches for: `terms` without the stop words, or all of them when
    nothing else is left."""
    return [term for term in terms if term not in STOP_WORDS] or terms


def fts_match_expression(text: str, *, any_term: bool = False) -> str | None:
    """An FTS5 MATCH expression for any user string, or None when it holds no searchable word.

    Every term is a quoted string, so FTS5 operators (AND, OR, NOT, NEAR, *, ^, column filters,
    parentheses) typed by a user are searched as words, never interpreted.
    """
    terms = query_terms(text)
    if not terms:
        return None
    if any_term:
        return " OR ".join(f'"{term}"' for term in fallback_terms(terms))
    return " ".join(f'"{term}"' for term in terms)
