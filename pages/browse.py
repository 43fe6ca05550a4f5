"""Filterable, paginated gallery of the catalogue, with a detail view per product."""

import streamlit as st

from ui import data
from ui.widgets import filter_controls, product_detail_from_query, product_gallery, require_catalogue

PAGE_SIZE = 24


def _step_page(delta: int) -> None:
    st.session_state["browse_page"] = max(1, int(st.session_state.get("browse_page", 1)) + delta)


st.title("Browse")
require_catalogue()
if not product_detail_from_query():
    filters = filter_controls(key="browse")
    if st.session_state.get("browse_filters") != filters:  # new filters start at page 1
        st.session_state["browse_filters"] = filters
        st.session_state["browse_page"] = 1
    result = data.browse_page(
        data.database_url(),
        filters.category,
        filters.min_price,
        filters.max_price,
        filters.location,
        int(st.session_state.get("browse_page", 1)),
        PAGE_SIZE,
    )
    st.session_state["browse_page"] = result.page  # clamped to the pages there are
    st.caption(f"{result.total:,} products · page {result.page} of {result.pages}")
    if result.products:
        product_gallery(result.products, key="browse_card")
    else:
        st.info("No product matches these filters.")
    previous_col, page_col, next_col = st.columns([1, 2, 1], vertical_alignment="bottom")
    previous_col.button("← Previous", disabled=result.page <= 1, key="browse_previous", on_click=_step_page, args=(-1,))
    page_col.number_input("Page", min_value=1, max_value=result.pages, key="browse_page")
    next_col.button("Next →", disabled=result.page >= result.pages, key="browse_next", on_click=_step_page, args=(1,))
