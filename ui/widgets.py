"""Reusable page pieces: empty-catalogue notice, filters, product gallery and detail view."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.data.markdown import escape_markdown
from core.runtime import background
from core.settings import get_settings
from db.queries import ProductView
from services import review
from ui import data
from ui.data import FilterValues

ADMIN_PAGE = "pages/admin.py"


def require_catalogue() -> tuple[int, int]:
    """Counts of products and images; with an empty catalogue, explains how to import one and stops."""
    products, images = data.catalogue_counts(data.database_url())
    if products == 0:
        st.info(
            "The catalogue is empty. Import one from the command line:\n\n"
            "```\npython -m core import ../shared/data/marketplace\n```\n\n"
            "or from the Import page, which takes a folder path."
        )
        st.page_link(ADMIN_PAGE, label="Open the Import page", icon=":material/upload:")
        st.stop()
    return products, images


def filter_controls(*, key: str) -> FilterValues:
    """Category (top level, then sub-category), price range and location, in one row."""
    top_col, sub_col, min_col, max_col, location_col = st.columns([3, 3, 1.4, 1.4, 2])
    tops = data.category_paths(data.database_url())
    top = top_col.selectbox("Category", ["All categories", *tops], key=f"{key}_top")
    category = None if top == "All categories" else top
    if category:
        subs = data.category_paths(data.database_url(), category)
        labels = {path: path.split(" / ")[-1] for path in subs}
        sub = sub_col.selectbox("Sub-category", ["All", *subs], key=f"{key}_sub", format_func=lambda path: labels.get(path, path))
        category = category if sub == "All" else sub
    else:
        sub_col.selectbox("Sub-category", ["All"], key=f"{key}_sub_disabled", disabled=True)
    min_price = min_col.number_input("Min £", min_value=0.0, value=None, step=10.0, key=f"{key}_min")
    max_price = max_col.number_input("Max £", min_value=0.0, value=None, step=10.0, key=f"{key}_max")
    location = location_col.text_input("Location contains", key=f"{key}_location", max_chars=100)
    if min_price is not None and max_price is not None and min_price > max_price:
        st.warning("The minimum price is above the maximum: no product can match.")
    return FilterValues(category, min_price, max_price, location.strip() or None)


def photo_path(relative: str) -> Path:
    return get_settings().media_dir / relative


def show_photo(relative: str | None, *, caption: str | None = None) -> None:
    path = photo_path(relative) if relative else None
    if path is not None and path.is_file():
        st.image(str(path), caption=caption, width="stretch")
    else:
        st.caption("No photo" if relative is None else "Photo file missing")


def product_card(product: ProductView, *, key: str, note: str | None = None) -> None:
    with st.container(border=True):
        show_photo(product.image_paths[0] if product.image_paths else None)
        st.markdown(f"**{escape_markdown(product.name)}**")
        st.markdown(f"£{product.price:,.2f} · {escape_markdown(product.location)}")
        st.caption(escape_markdown(product.category))
        if note:
            st.caption(note)
        if st.button("Details", key=f"{key}_{product.id}", width="stretch"):
            st.query_params["product"] = product.id
            st.rerun()


def product_gallery(products: list[ProductView], *, key: str, notes: list[str] | None = None, columns: int = 4) -> None:
    for start in range(0, len(products), columns):
        row = st.columns(columns)
        for offset, product in enumerate(products[start : start + columns]):
            with row[offset]:
                product_card(product, key=key, note=notes[start + offset] if notes else None)


def product_detail_from_query() -> bool:
    """Show the product named in the URL (?product=ID) with all its photos; False when none is."""
    product_id = st.query_params.get("product")
    if not product_id:
        return False
    if st.button("← Back to the list", key="detail_back"):
        del st.query_params["product"]
        st.rerun()
    product = data.product(data.database_url(), product_id)
    if product is None:
        st.warning("That product is not in the catalogue (it may have been removed).")
        return True
    st.subheader(escape_markdown(product.name), anchor=False)
    st.markdown(f"**£{product.price:,.2f}** · {escape_markdown(product.location)} · {escape_markdown(product.category)}")
    if product.image_paths:
        photo_columns = st.columns(max(2, len(product.image_paths)))
        for column, relative in zip(photo_columns, product.image_paths):
            with column:
                show_photo(relative)
    else:
        st.caption("This product has no photo.")
    st.markdown("**Description**")
    st.text(product.description or "(no description)")
    st.caption(f"Listing id {escape_markdown(product.id)} · source: {escape_markdown(product.source)}")
    label_fix(product)
    return True


def label_fix(product: ProductView) -> None:
    """Correct a product's category by hand: checked against the version shown, recorded in the label history."""
    with st.expander("Correct the category"):
        new_category = category_picker(key="label_fix", default_top=product.top_level)
        name_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
        name_col.text_input("Your name (recorded with the change)", key="reviewer_name", max_chars=100)
        st.text_input("Why (optional)", key="label_fix_reason", max_chars=300)
        # Arguments are fixed when the button is drawn: the version and category the person sees.
        button_col.button(
            "Save the category",
            key="label_fix_save",
            type="primary",
            on_click=_save_label_fix,
            args=(product.id, product.label_version, new_category),
        )
    kind, message = st.session_state.pop("label_fix_message", (None, ""))
    if kind == "success":
        st.success(message)
    elif kind == "error":
        st.error(message)


def _save_label_fix(product_id: str, seen_version: int, new_category: str) -> None:
    try:
        review.fix_label(
            data.engine(),
            product_id,
            new_category=new_category,
            changed_by=st.session_state.get("reviewer_name", "").strip(),
            seen_version=seen_version,
            reason=st.session_state.get("label_fix_reason", "").strip(),
        )
    except review.StaleLabelError as error:
        data.invalidate()  # the page then shows the label as it is now
        st.session_state["label_fix_message"] = ("error", f"Not saved: {escape_markdown(str(error))}")
    except review.ReviewError as error:
        st.session_state["label_fix_message"] = ("error", f"Not saved: {escape_markdown(str(error))}")
    else:
        data.invalidate()
        st.session_state["label_fix_message"] = (
            "success",
            f"Category changed to {escape_markdown(new_category)}; the change is in the label history.",
        )


def category_picker(*, key: str, default_top: str | None = None) -> str:
    """A category path: top level, then optionally a sub-category and a sub-sub-category."""
    tops = data.category_paths(data.database_url())
    columns = st.columns(3)
    top = columns[0].selectbox("Category", tops, index=tops.index(default_top) if default_top in tops else 0, key=f"{key}_top")
    path = top
    for depth, column in enumerate(columns[1:], start=1):
        children = data.category_paths(data.database_url(), path)
        if not children:
            break
        choice = column.selectbox(
            f"Sub-category (level {depth + 1})",
            ["(none)", *children],
            key=f"{key}_level{depth}",
            format_func=lambda option: option.split(" / ")[-1],
        )
        if choice == "(none)":
            break
        path = choice
    return path


def job_progress(key: str, *, waiting: str) -> None:
    """A background job's progress (what waits for it, how far it is), redrawn every 2 s; the page
    reruns when the job ends. A failed job shows its message and a button to try again."""
    state = background.status(key)
    if state is not None and state.error is not None:
        st.error(f"{waiting} could not be prepared: {escape_markdown(state.error)}")
        if st.button("Try again", key=f"retry_{key}"):
            background.clear(key)
            st.rerun()
        return

    @st.fragment(run_every=2)
    def redraw() -> None:
        current = background.status(key)
        if current is None or not current.running:
            st.rerun(scope="app")
        st.progress(current.fraction, text=f"{waiting} when the background job is done: {escape_markdown(current.describe())}")

    redraw()
