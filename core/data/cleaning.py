"""Cleaning of listing fields, as plain functions (the seed's `CleanTabular`).

Raw values stay in the catalogue next to the cleaned ones; models only ever see cleaned text,
because the scraped "Posted by ... in CATEGORY in TOWN" boilerplate names the label.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

CATEGORY_SEPARATOR = " / "
# A level may hold a slash ("Ham/Amateur Radios"): only a slash with space on both sides separates.
_CATEGORY_SPLIT = re.compile(r"\s+/\s+")
MAX_PRICE = Decimal(100_000_000)  # pence must fit a 64-bit integer column with room to spare

# "Name | in Town, County | Gumtree": the location and site name are scraped page-title noise.
_GUMTREE_SUFFIX = re.compile(r"\s*\|\s*(?:in\s[^|]*\|\s*)?Gumtree\s*$", re.IGNORECASE)
_DATE = r"(?:\d{1,2}\.?\s+[A-Z][a-z]+,?\s+\d{4}|[A-Z][a-z]+\s+\d{1,2},\s+\d{4})"
# Up to the first date after "Posted by", or to the end when no date follows (seen both ways).
_POSTED_BY = re.compile(r"\s*\bPosted by\b.*?(?:" + _DATE + r"|$)", re.DOTALL)
_PRICE = re.compile(r"^\s*(?:£|GBP)?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d{1,2})?\s*$", re.IGNORECASE)
_NOT_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+")


def clean_product_name(raw_name: str) -> str:
    """Drop the `| in Town, County | Gumtree` suffix and surrounding white space."""
    name = _GUMTREE_SUFFIX.sub("", raw_name or "")
    return _SPACES.sub(" ", name).strip(" |")


def parse_price(raw_price: str | float | int | None) -> Decimal:
    """`£1,250.00` -> Decimal('1250.00'). Raises ValueError on anything that is not a price."""
    if raw_price is None:
        raise ValueError("price is missing")
    text = str(raw_price)
    match = _PRICE.match(text)
    if not match:
        raise ValueError(f"not a price: {text!r}")
    try:
        value = Decimal(match.group(1).replace(",", "") + (match.group(2) or ""))
    except InvalidOperation as error:  # pragma: no cover - the pattern admits only digits
        raise ValueError(f"not a price: {text!r}") from error
    if value > MAX_PRICE:
        raise ValueError(f"over the limit of £{MAX_PRICE:,}")
    return value.quantize(Decimal("0.01"))


def price_to_pence(price: Decimal) -> int:
    return int((price * 100).to_integral_value())


def strip_boilerplate(description: str) -> str:
    """Remove the scraped `Posted by NAME in CATEGORY in TOWN. DATE` sentence(s)."""
    return _POSTED_BY.sub(" ", description or "")


def clean_description(raw_description: str | None) -> str:
    """Boilerplate removed, carriage returns turned into new lines, runs of spaces folded."""
    text = strip_boilerplate(raw_description or "").replace("\r\n", "\n").replace("\r", "\n")
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def split_category(path: str) -> list[str]:
    """`A / B / C` -> ['A', 'B', 'C'], split on the separator only (`A / B/C` -> ['A', 'B/C']); parts
    that are empty or nothing but slashes dropped."""
    return [part.strip() for part in _CATEGORY_SPLIT.split(f" {path or ''} ") if part.strip(" /")]


def top_level_category(path: str) -> str:
    parts = split_category(path)
    if not parts:
        raise ValueError("category is empty")
    return parts[0]


def normalise_for_model(text: str, *, lowercase: bool = True, lemmatise: bool = False, remove_stopwords: bool = False) -> str:
    """The text form models see: NFKC, lower case, punctuation and symbols removed.

    Lemmatisation (simplemma, offline) and English stop-word removal (scikit-learn's list) are
    options, as in the seed; sentence encoders do better without them, so they are off by default.
    """
    text = unicodedata.normalize("NFKC", text or "")
    if lowercase:
        text = text.lower()
    words = _NOT_WORD.sub(" ", text).split()
    if remove_stopwords:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        words = [word for word in words if word.lower() not in ENGLISH_STOP_WORDS]
    if lemmatise:
        import simplemma

        words = [simplemma.lemmatize(word, lang="en") for word in words]
    return " ".join(words)


def model_text(name: str, description: str) -> str:
    """Cleaned name + cleaned description, the one input every text model and index uses."""
    return normalise_for_model(f"{clean_product_name(name)}. {clean_description(description)}")
