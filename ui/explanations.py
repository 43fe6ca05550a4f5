"""The "Why this category?" view of Classify and Review: the words that pushed the text model towards or
away from a category, and where the image model looked in the photo (core.inference.explanations)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st
from PIL import Image

from core.data.images import ImageError
from core.data.markdown import escape_markdown
from core.inference.category_classifier import CategoryClassifier
from core.inference.explanations import WordAttribution, overlay, photo_heatmap, word_attributions

SHOWN_SHARE = 0.15  # words within this share of the strongest attribution are not highlighted
MIN_SHOWN = 0.01  # nor those that moved the probability by under a point


def highlighted_words(attributions: Sequence[WordAttribution]) -> str:
    """Markdown of the words in order: green behind those that pushed towards the category, red behind
    those that pushed away, plain the rest."""
    strongest = max((abs(item.attribution) for item in attributions), default=0.0)
    floor = max(MIN_SHOWN, SHOWN_SHARE * strongest)
    parts = []
    for item in attributions:
        word = escape_markdown(item.word)
        if item.attribution >= floor:
            parts.append(f":green-background[{word}]")
        elif item.attribution <= -floor:
            parts.append(f":red-background[{word}]")
        else:
            parts.append(word)
    return " ".join(parts)


def explanation(
    load_classifier: Callable[[], CategoryClassifier], *, text: str, photos: Callable[[], Sequence[Image.Image]], category: str, key: str
) -> None:
    """On demand (a toggle): the models, the photos and the backbone on torch load only when asked for."""
    if not st.toggle("Why this category?", key=f"{key}_why", help="Which words and which part of the photo led to the category"):
        return
    with st.spinner("Explaining…"):
        classifier = load_classifier()
        if category not in classifier.labels:
            st.caption(f"The models do not know the category {escape_markdown(category)}.")
            return
        words = word_attributions(classifier, text, category=category) if text.strip() else []
        try:
            shown = list(photos()) if classifier.backbone.supports_finetuning else []
        except ImageError as error:  # a photo file damaged since it was stored: the words still explain
            st.caption(f"Photo not explained: {escape_markdown(str(error))}")
            shown = []
        heat = photo_heatmap(classifier, shown[0], category=category) if shown else None
    if words:
        st.markdown(f"**Words** (text model, for {escape_markdown(category)}): " + highlighted_words(words))
        st.caption("Green pushed towards the category, red away from it: the probability with the word against without it.")
    if heat is not None:
        seen, heatmap = heat
        st.image(overlay(seen, heatmap), caption=f"Where the image model looked for {category} (Grad-CAM)", width=260)
