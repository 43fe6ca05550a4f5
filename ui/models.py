"""Cached model resources for the pages: the active classifier, the catalogue's vector indexes,
the price model and the active models' held-out evaluation. Each is built once per process and
rebuilt only when its inputs change (the models folder's manifest, the catalogue's revision)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core.classify import CategoryClassifier
from core.dataset import Catalogue
from core.evaluation import PredictionSet
from core.model_evaluation import held_out_predictions
from core.pricing import PricePredictor
from core.search_indexes import SearchIndexes, build_search_indexes
from core.settings import get_settings
from db import queries
from db.session import session_scope
from ui import data


def models_key() -> str:
    """The active models folder and its manifest's hash: changes when another set becomes active."""
    folder = get_settings().models_dir
    manifest = folder / "manifest.json"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16] if manifest.is_file() else "none"
    return f"{folder}#{digest}"


@st.cache_resource(show_spinner="Loading the models…", max_entries=2)
def _classifier(key: str) -> CategoryClassifier:
    return CategoryClassifier(Path(key.split("#")[0]))


def classifier() -> CategoryClassifier:
    """Raises core.model_io.ModelFileError (a message for the user) when the models cannot load."""
    return _classifier(models_key())


def revision() -> str:
    with session_scope(data.engine()) as session:
        return queries.catalogue_revision(session)


@st.cache_resource(show_spinner=False, max_entries=1)
def _catalogue(database_url: str, catalogue_revision: str) -> Catalogue:
    with session_scope(data.engine()) as session:
        return queries.training_catalogue(session, media_dir=get_settings().media_dir)


def catalogue() -> Catalogue:
    return _catalogue(data.database_url(), revision())


@st.cache_resource(show_spinner="Embedding the catalogue for search (once; about 2 minutes on a new catalogue)…", max_entries=1)
def _search_indexes(database_url: str, catalogue_revision: str) -> SearchIndexes:
    return build_search_indexes(_catalogue(database_url, catalogue_revision), cache_dir=get_settings().data_dir / "cache")


def search_indexes() -> SearchIndexes:
    return _search_indexes(data.database_url(), revision())


@st.cache_resource(show_spinner="Fitting the price model…", max_entries=1)
def _price_predictor(database_url: str, catalogue_revision: str) -> PricePredictor:
    with session_scope(data.engine()) as session:
        return PricePredictor.fit(queries.listings_frame(session))


def price_predictor() -> PricePredictor:
    return _price_predictor(data.database_url(), revision())


@st.cache_resource(show_spinner="Evaluating the active models on the held-out products (once per model set)…", max_entries=2)
def _held_out(database_url: str, catalogue_revision: str, key: str) -> dict[str, PredictionSet]:
    return held_out_predictions(_classifier(key), _catalogue(database_url, catalogue_revision), cache_dir=get_settings().data_dir / "cache")


def held_out() -> dict[str, PredictionSet]:
    return _held_out(data.database_url(), revision(), models_key())
