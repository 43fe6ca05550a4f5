"""Search the catalogue by keyword, meaning, photo or both keyword and meaning; best match first."""

import streamlit as st

from core.data.markdown import escape_markdown, highlight_markdown
from core.data.uploads import MAX_UPLOAD_MB, UPLOAD_TYPES, read_uploaded_photos
from core.search.keyword_query import MATCH_END, MATCH_START
from services.search import SearchInputError, search
from ui import data, resources
from ui.widgets import filter_controls, job_progress, product_detail_from_query, product_gallery, require_catalogue

MODES = {"keyword": "Keyword", "semantic": "Meaning", "photo": "Photo", "hybrid": "Hybrid (keyword + meaning)"}
HELP = {
    "keyword": "Every word must appear in the name or description (falls back to any word); titles weigh more than descriptions.",
    "semantic": "Listings whose text means something close to your words, even without sharing them (sentence embeddings).",
    "photo": "Listings whose photos look closest to yours (image embeddings).",
    "hybrid": "Keyword and meaning rankings fused by reciprocal rank: items both rank highly come first.",
}

st.title("Search")
require_catalogue()
if not product_detail_from_query():
    mode = st.segmented_control("Search by", list(MODES), format_func=MODES.get, default="keyword", required=True, key="search_mode")
    st.caption(HELP[mode])
    photos = []
    query = ""
    if mode == "photo":
        upload = st.file_uploader(
            "A photo of what you are looking for", type=list(UPLOAD_TYPES), key="search_photo", max_upload_size=MAX_UPLOAD_MB
        )
        if upload is not None:
            read = read_uploaded_photos([(upload.name, upload.getvalue())])
            for problem in read.problems:
                st.error(f"Photo not used: {escape_markdown(problem)}")
            photos = read.photos
    else:
        query = st.text_input(
            "Search the catalogue",
            key="search_query",
            max_chars=500,
            placeholder="e.g. iphone 13, oak dining table, something to sit on in the garden",
        )
    filters = filter_controls(key="search")
    limit = st.select_slider("Results", options=[12, 24, 48, 96], value=24, key="search_limit")
    indexes = resources.search_indexes() if mode != "keyword" else None
    if mode != "keyword" and indexes is None:
        job_progress(resources.embedding_job_key(), waiting=f"Search by {MODES[mode].lower()}")
        st.caption(
            "The catalogue is being embedded for search by meaning and by photo (once; later imports only add what is new). "
            "Keyword search works now."
        )
    elif (mode == "photo" and photos) or (mode != "photo" and query.strip()):
        try:
            if mode == "keyword":
                result = data.keyword_search(
                    data.database_url(), query, filters.category, filters.min_price, filters.max_price, filters.location, limit
                )
                hits_note = " (no product holds every word: showing those with any of them)" if result.matched_any_term else ""
                st.caption(f"{len(result.hits)} results in {result.took_ms:.1f} ms{hits_note}")
                products = [hit.product for hit in result.hits]
                notes = [
                    f"score {hit.score:.2f} · {highlight_markdown(hit.snippet, start=MATCH_START, end=MATCH_END)}" for hit in result.hits
                ]
            else:
                found = search(
                    data.engine(), mode=mode, query=query, photos=photos, indexes=indexes, filters=data.filters_of(filters), limit=limit
                )
                any_note = " (keyword part matched any word)" if found.matched_any_term else ""
                st.caption(f"{len(found.hits)} results in {found.took_ms:.1f} ms (query embedded in {found.embed_ms:.0f} ms){any_note}")
                if warning := resources.vector_search_warning():
                    st.caption(warning)
                products = [hit.product for hit in found.hits]
                notes = [
                    escape_markdown(hit.why)
                    + (f" · {highlight_markdown(hit.snippet, start=MATCH_START, end=MATCH_END)}" if hit.snippet else "")
                    for hit in found.hits
                ]
        except SearchInputError as error:
            st.info(str(error).capitalize() + ".")
        else:
            if products:
                product_gallery(products, key="search_hit", notes=notes)
            else:
                st.info("No product matches. Try fewer or other words, or widen the filters.")
    elif mode == "photo":
        st.caption("Upload a photo to find listings that look like it.")
    else:
        st.caption("Type words to search names and descriptions; the closest matches come first.")
