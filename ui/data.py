"""Cached access to the catalogue for the pages: an engine per URL, and query results keyed by the
catalogue's revision (one cheap query per call), so that a change made by another instance sharing
the catalogue (a label fixed through the API, another reviewer's app) shows on the next page run."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import streamlit as st
from sqlalchemy import Engine

from core.settings import get_settings
from db import keyword_search as fulltext
from db import queries
from db.session import make_engine, session_scope

if TYPE_CHECKING:  # pandas takes half a second to import: only the functions that build frames load it
    import pandas as pd

    from core.evaluation.metrics import PredictionSet

CACHED_RESULTS = 64  # per query function: pages, searches and products a session goes back to


@dataclass(frozen=True)
class FilterValues:
    """What the filter widgets hold (ui.widgets.filter_controls)."""

    category: str | None
    min_price: float | None
    max_price: float | None
    location: str | None


@st.cache_resource(show_spinner=False)
def _engine_for(database_url: str) -> Engine:
    return make_engine(database_url)


def engine() -> Engine:
    return _engine_for(get_settings().database_url)


def database_url() -> str:
    return get_settings().database_url


def revision(database_url: str | None = None) -> str:
    with session_scope(_engine_for(database_url or get_settings().database_url)) as session:
        return queries.catalogue_revision(session)


def invalidate() -> None:
    """After any write: drop cached query results so every page sees it."""
    st.cache_data.clear()


def _filters(category: str | None, min_price: float | None, max_price: float | None, location: str | None) -> queries.ProductFilters:
    return queries.ProductFilters(
        category=category or None,
        min_price=Decimal(str(min_price)) if min_price is not None else None,
        max_price=Decimal(str(max_price)) if max_price is not None else None,
        location=location or None,
    )


def filters_of(values: FilterValues) -> queries.ProductFilters:
    return _filters(values.category, values.min_price, values.max_price, values.location)


# Each cached query takes the catalogue's revision as its key (unused in the body): a changed catalogue
# is a cache miss. The public functions below look the revision up and pass it.


@st.cache_data(max_entries=CACHED_RESULTS, show_spinner=False)
def _catalogue_counts(database_url: str, revision: str) -> tuple[int, int]:
    with session_scope(_engine_for(database_url)) as session:
        return queries.catalogue_counts(session)


@st.cache_data(max_entries=CACHED_RESULTS, show_spinner=False)
def _category_paths(database_url: str, revision: str, parent: str | None) -> list[str]:
    with session_scope(_engine_for(database_url)) as session:
        return queries.category_paths(session, parent=parent)


@st.cache_data(max_entries=CACHED_RESULTS, show_spinner=False)
def _browse_page(database_url: str, revision: str, filters: queries.ProductFilters, page: int, page_size: int) -> queries.ProductPage:
    with session_scope(_engine_for(database_url)) as session:
        return queries.browse_products(session, filters=filters, page=page, page_size=page_size)


@st.cache_data(max_entries=CACHED_RESULTS, show_spinner=False)
def _keyword_search(database_url: str, revision: str, query: str, filters: queries.ProductFilters, limit: int) -> fulltext.SearchResult:
    with session_scope(_engine_for(database_url)) as session:
        return fulltext.keyword_search(session, query, filters=filters, limit=limit)


@st.cache_data(max_entries=CACHED_RESULTS, show_spinner=False)
def _product(database_url: str, revision: str, product_id: str) -> queries.ProductView | None:
    with session_scope(_engine_for(database_url)) as session:
        return queries.get_product(session, product_id)


@st.cache_data(max_entries=4, show_spinner=False)
def _products_frame(database_url: str, revision: str) -> pd.DataFrame:
    with session_scope(_engine_for(database_url)) as session:
        return queries.products_frame(session)


@st.cache_data(max_entries=CACHED_RESULTS, show_spinner=False)
def _products_by_ids(database_url: str, revision: str, product_ids: tuple[str, ...]) -> list[queries.ProductView]:
    with session_scope(_engine_for(database_url)) as session:
        return queries.products_by_ids(session, list(product_ids))


def catalogue_counts(database_url: str) -> tuple[int, int]:
    return _catalogue_counts(database_url, revision(database_url))


def category_paths(database_url: str, parent: str | None = None) -> list[str]:
    return _category_paths(database_url, revision(database_url), parent)


def browse_page(
    database_url: str,
    category: str | None,
    min_price: float | None,
    max_price: float | None,
    location: str | None,
    page: int,
    page_size: int,
) -> queries.ProductPage:
    filters = _filters(category, min_price, max_price, location)
    return _browse_page(database_url, revision(database_url), filters, page, page_size)


def keyword_search(
    database_url: str, query: str, category: str | None, min_price: float | None, max_price: float | None, location: str | None, limit: int
) -> fulltext.SearchResult:
    filters = _filters(category, min_price, max_price, location)
    return _keyword_search(database_url, revision(database_url), query, filters, limit)


def product(database_url: str, product_id: str) -> queries.ProductView | None:
    return _product(database_url, revision(database_url), product_id)


def products_frame(database_url: str) -> pd.DataFrame:
    return _products_frame(database_url, revision(database_url))


def products_by_ids(database_url: str, product_ids: tuple[str, ...]) -> list[queries.ProductView]:
    return _products_by_ids(database_url, revision(database_url), product_ids)


# Training runs change while a page watches them: read fresh on every run of the page. (db.runs
# builds pandas frames: imported where used, so that pages without runs never load pandas.)


def runs_frame() -> pd.DataFrame:
    from db import runs

    return runs.runs_frame(engine())


def epochs_frame(run_ids: list[int]) -> pd.DataFrame:
    from db import runs

    return runs.epochs_frame(engine(), run_ids)


def run_prediction_set(run_id: int) -> PredictionSet:
    from db import runs

    return runs.run_prediction_set(engine(), run_id)
