"""Explanations that are faithful to the models: taking out the words the attributions rank highest
lowers the text model's probability more than taking out as many random words, on most shared
listings; the Grad-CAM heatmap of a generated photo with one coloured object peaks on that object."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from core.data.cleaning import clean_product_name, model_text
from core.inference.explanations import overlay, photo_heatmap, word_attributions

SAMPLE = 30
REMOVED = 3


def _probability(classifier, words: list[str], category: int) -> float:  # type: ignore[no-untyped-def]
    raw, _ = classifier.text_outputs_of([" ".join(words)])
    return float(classifier.calibrated("text", raw)[0, category])


def test_the_most_attributed_words_matter_more_than_random_ones(shipped_classifier, marketplace_dir: Path) -> None:  # type: ignore[no-untyped-def]
    products = pd.read_csv(marketplace_dir / "Products.csv", lineterminator="\n").sample(frac=1, random_state=7)
    rng = random.Random(7)
    wins = tried = 0
    for row in products.itertuples():
        text = f"{clean_product_name(row.product_name)}\n{row.product_description}"
        words = model_text("", text).split()
        if not 8 <= len(words) <= 60:
            continue
        attributions = word_attributions(shipped_classifier, text)
        assert [item.word for item in attributions] == words
        category = int(np.argmax(shipped_classifier.calibrated("text", shipped_classifier.text_outputs_of([" ".join(words)])[0])[0]))
        top = set(np.argsort([-item.attribution for item in attributions])[:REMOVED].tolist())
        without_top = _probability(shipped_classifier, [word for index, word in enumerate(words) if index not in top], category)
        without_random = np.mean(
            [
                _probability(shipped_classifier, [word for index, word in enumerate(words) if index not in chosen], category)
                for chosen in (set(rng.sample(range(len(words)), REMOVED)) for _ in range(4))
            ]
        )
        wins += without_top < without_random
        tried += 1
        if tried == SAMPLE:
            break
    assert tried == SAMPLE and wins >= 0.8 * SAMPLE, f"{wins} of {tried}"


def test_words_are_attributed_for_the_category_asked_about(shipped_classifier) -> None:  # type: ignore[no-untyped-def]
    text = "iphone 12 pro 128gb unlocked with charger and a garden hose"
    phones = {
        item.word: item.attribution for item in word_attributions(shipped_classifier, text, category="Phones, Mobile Phones & Telecoms")
    }
    garden = {item.word: item.attribution for item in word_attributions(shipped_classifier, text, category="Home & Garden")}
    assert phones["iphone"] > 0 and phones["iphone"] > phones["garden"]
    assert garden["garden"] > garden["iphone"]
    assert word_attributions(shipped_classifier, "  !!! ") == []


@pytest.mark.parametrize("centre", [(60, 70), (160, 150)])
def test_the_photo_heatmap_peaks_on_the_one_object(shipped_classifier, centre: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    photo = Image.new("RGB", (224, 224), (235, 235, 235))
    radius = 34
    box = (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)
    ImageDraw.Draw(photo).ellipse(box, fill=(200, 30, 30))
    seen, heatmap = photo_heatmap(shipped_classifier, photo)
    assert seen.shape == (224, 224, 3) and heatmap.shape == (224, 224) and heatmap.max() == pytest.approx(1.0)
    row, column = np.unravel_index(int(heatmap.argmax()), heatmap.shape)
    cell = 32  # a Grad-CAM cell: 7 x 7 over 224 pixels
    assert box[0] - cell <= column <= box[2] + cell and box[1] - cell <= row <= box[3] + cell  # the peak, within a cell
    rows, columns = np.indices(heatmap.shape)
    mass = heatmap / heatmap.sum()
    centre_row, centre_column = (rows * mass).sum(), (columns * mass).sum()
    assert box[0] <= centre_column <= box[2] and box[1] <= centre_row <= box[3]  # the heat's centre, on the object
    inside = np.zeros(heatmap.shape, bool)
    inside[box[1] : box[3], box[0] : box[2]] = True
    assert heatmap[inside].mean() > 2 * heatmap[~inside].mean()  # the object holds the heat, not the background
    assert overlay(seen, heatmap).size == (224, 224)
