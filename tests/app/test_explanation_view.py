"""The words of an explanation as the Classify and Review pages highlight them."""

from __future__ import annotations

from core.inference.explanations import WordAttribution
from ui.explanations import highlighted_words


def test_highlighted_words_mark_the_strong_ones_both_ways() -> None:
    words = [WordAttribution("iphone", 0.4), WordAttribution("for", 0.001), WordAttribution("garden", -0.2), WordAttribution("[x]", 0.3)]
    assert highlighted_words(words) == r":green-background[iphone] for :red-background[garden] :green-background[\[x\]]"
    assert highlighted_words([]) == ""
