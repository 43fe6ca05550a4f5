"""Keyword search with filters; results as a gallery, best match first."""

import streamlit as st

from core.markdown import highlight_markdown
from db.queries import MATCH_END, MATCH_START
from ui import data
from ui.widgets import filter_controls, product_detail_from_query, product_gallery, require_catalogue

st.title("Search")
require_catalogue()
if not product_detail_from_query():
    query = st.text_input("Search the catalogue", key="search_query", max_chars=500, placeholder="e.g. iphone 13, oak dining table")
    filters = filter_controls(key="search")
    limit = st.select_slider("Results", options=[12, 24, 48, 96], value=24, key="search_limit")
    if query.strip():
        result = data.keyword_search(
            data.database_url(), query, filters.category, filters.min_price, filters.max_price, filters.location, limit
        )
        note = " (no product holds every word: showing those with any of them)" if result.matched_any_term else ""
        st.caption(f"{len(result.hits)} results in {result.took_ms:.1f} ms{note}")
        if result.hits:
            notes = [
                f"score {hit.score:.2f} · {highlight_markdown(hit.snippet, start=MATCH_START, end=MATCH_END)}"
                for hit in result.hits
            ]
            product_gallery([hit.product for hit in result.hits], key="search_hit", notes=notes)
        else:
            st.info("No product matches. Try fewer or other words, or widen the filters.")
    else:
        st.caption("Type words to search names and descriptions; the closest matches come first.")
