from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.data.cleaning import (
    clean_description,
    clean_product_name,
    model_text,
    normalise_for_model,
    parse_price,
    price_to_pence,
    split_category,
    strip_boilerplate,
    top_level_category,
)
from core.data.markdown import escape_markdown, highlight_markdown


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Mirror wall art | in Wokingham, Berkshire | Gumtree", "Mirror wall art"),
        ("ASUS TUF RTX 3080 12GB | GDDR6X | 2022 MODEL | in Ashton, Bristol | Gumtree", "ASUS TUF RTX 3080 12GB | GDDR6X | 2022 MODEL"),
        (
            "NINTENDO SWITCH WITH 2 GAMES |GREAT CONDITION| | in Newton Mearns, Glasgow | Gumtree",
            "NINTENDO SWITCH WITH 2 GAMES |GREAT CONDITION",
        ),
        ("Plain name", "Plain name"),
        ("  spaced   out  | Gumtree", "spaced out"),
        ("", ""),
    ],
)
def test_clean_product_name_strips_gumtree_suffix(raw: str, expected: str) -> None:
    assert clean_product_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("£1,250.00", Decimal("1250.00")),
        ("£5.00", Decimal("5.00")),
        ("£0.00", Decimal("0.00")),
        ("20", Decimal("20.00")),
        (" £ 3.5 ", Decimal("3.50")),
        ("£10,000,000.00", Decimal("10000000.00")),
        (12.5, Decimal("12.50")),
    ],
)
def test_parse_price(raw: str, expected: Decimal) -> None:
    assert parse_price(raw) == expected


@pytest.mark.parametrize("raw", ["", "free", "£-5.00", "£1,25.00", "£12.345", "1e3", None, "nan", "£ 5 6"])
def test_parse_price_rejects_non_prices(raw: str | None) -> None:
    with pytest.raises(ValueError):
        parse_price(raw)


def test_price_to_pence() -> None:
    assert price_to_pence(Decimal("1250.99")) == 125099


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Mirror wall art. Posted by Nisha in Dining, Living Room Furniture, Mirrors, Clocks & Ornaments in Wokingham. 25 February 2022Size 45x45cm",
            "Mirror wall art. Size 45x45cm",
        ),
        ("Ikea Malm dresser. Posted by Felix in Beds & Bedroom Furniture, Wardrobes in Lambeth. 25. February 2022", "Ikea Malm dresser."),
        ("Dining table. Posted by Levi in Dining Tables & Chairs in Salford. February 25, 2022", "Dining table."),
        ("Handyman Only £35. Posted by VICKY, in Greenford. ", "Handyman Only £35."),
        ("Nothing to strip here.", "Nothing to strip here."),
    ],
)
def test_clean_description_strips_label_leaking_boilerplate(raw: str, expected: str) -> None:
    cleaned = clean_description(raw)
    assert cleaned == expected
    assert "Posted by" not in strip_boilerplate(raw)


def test_clean_description_turns_carriage_returns_into_lines() -> None:
    assert clean_description("New sofa\r👉 Factory price\r\r  Delivery   all UK ") == "New sofa\n👉 Factory price\nDelivery all UK"


def test_categories() -> None:
    path = "Home & Garden / Dining, Living Room Furniture / Sofas, Armchairs & Suites / Private"
    assert split_category(path) == ["Home & Garden", "Dining, Living Room Furniture", "Sofas, Armchairs & Suites", "Private"]
    assert top_level_category(path) == "Home & Garden"
    with pytest.raises(ValueError):
        top_level_category(" / ")


def test_normalise_for_model_options() -> None:
    text = "The Chairs were RUNNING, £20!! (ono)"
    assert normalise_for_model(text) == "the chairs were running 20 ono"
    assert normalise_for_model(text, remove_stopwords=True) == "chairs running 20 ono"
    assert normalise_for_model(text, lemmatise=True, remove_stopwords=True) == "chair run 20 ono"
    assert normalise_for_model(text, lowercase=False).startswith("The Chairs")


def test_model_text_never_contains_the_label_boilerplate() -> None:
    text = model_text(
        "Phone case | in Laurencekirk, Aberdeenshire | Gumtree",
        "Used twice. Posted by sophie in Mobile Phone Accessories, Cases & Covers in Laurencekirk. 12 February 2022",
    )
    assert text == "phone case used twice"


@given(st.text())
def test_cleaning_functions_accept_any_text(text: str) -> None:
    assert "Posted by" not in strip_boilerplate(text + " Posted by X in Y in Z. 1 March 2022")
    assert isinstance(clean_product_name(text), str)
    assert "\r" not in clean_description(text)
    normalised = normalise_for_model(text)
    assert normalised == normalised.strip()
    assert "  " not in normalised


@given(st.text())
def test_escape_markdown_leaves_no_active_syntax(text: str) -> None:
    escaped = escape_markdown(text)
    # Every special character is preceded by a backslash, so none can open a link, tag or directive.
    for index, character in enumerate(escaped):
        if character in "[]()<>`*_:$":
            assert index > 0 and escaped[index - 1] == "\\"


def test_highlight_markdown_bolds_only_marked_words() -> None:
    assert highlight_markdown("a \x02b\x03 [c](javascript:x)", start="\x02", end="\x03") == r"a **b** \[c\]\(javascript\:x\)"
