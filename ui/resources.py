"""Cached model resources for the pages: the active classifier, the catalogue's vector indexes,
the price model and the active models' held-out evaluation. Each is built once per process and
rebuilt only when its inputs change (the models folder's manifest, the catalogue's revision).

No page waits on a whole-catalogue job: embedding the catalogue and evaluating models on a changed
catalogue run in the background (core.runtime.background); until they finish, `search_indexes()` and
`held_out()` return None and `ui.widgets.job_progress` shows how far they are."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from core.runtime import background
from core.settings import get_settings
from db import queries
from db.session import session_scope
from services import model_resources
from ui import data

# torch, transformers and scikit-learn take seconds to import: only the functions that need them
# import them, so that pages without a model (keyword search, Browse) draw at once.
if TYPE_CHECKING:
    from core.data.catalogue import Catalogue
    from core.evaluation.metrics import PredictionSet
    from core.inference.category_classifier import CategoryClassifier
    from core.inference.pricing import PricePredictor
    from core.search.indexes import SearchIndexes


def models_key() -> str:
    """The active models folder and its manifest's hash: changes when another set becomes active."""
    return model_resources.models_key(get_settings().models_dir)


@st.cache_resource(show_spinner="Loading the models…", max_entries=2)
def _classifier(key: str) -> CategoryClassifier:
    from core.inference.category_classifier import CategoryClassifier

    return CategoryClassifier(Path(key.split("#")[0]))


def classifier() -> CategoryClassifier:
    """Raises core.models.checkpoints.ModelFileError (a message for the user) when the models cannot load."""
    return _classifier(models_key())


@st.cache_resource(show_spinner=False, max_entries=1)
def _catalogue(database_url: str, catalogue_revision: str) -> Catalogue:
    from services.catalogue import models_catalogue

    return models_catalogue(data.engine(), settings=get_settings())


def catalogue() -> Catalogue:
    return _catalogue(data.database_url(), data.revision())


@st.cache_resource(show_spinner="Loading the search indexes…", max_entries=1)
def _search_indexes(database_url: str, catalogue_revision: str) -> SearchIndexes:
    from services.catalogue_vectors import catalogue_indexes

    return catalogue_indexes(data.engine(), _catalogue(database_url, catalogue_revision), cache_dir=get_settings().cache_dir)


def vector_search_warning() -> str | None:
    """A note for the Search page when the catalogue is PostgreSQL without pgvector (vectors then searched in memory)."""
    from services.catalogue_vectors import stores_vectors, vector_search_note

    engine = data.engine()
    if not stores_vectors(engine):
        return None
    note = vector_search_note(engine)
    return None if note.startswith("pgvector") else f"Search by meaning and photo runs {note}."


_fully_embedded: set[tuple[str, str]] = set()  # (database, revision) whose embeddings the cache was found to hold


def embedding_job_key() -> str:
    return model_resources.embedding_job_key(data.database_url(), data.revision())


def search_indexes() -> SearchIndexes | None:
    """The catalogue's vector indexes, or None while a background job embeds the catalogue (started
    here when the embedding cache lacks some of it; `ui.widgets.job_progress(embedding_job_key())` shows how far)."""
    database_url, catalogue_revision = data.database_url(), data.revision()
    if (database_url, catalogue_revision) in _fully_embedded:
        return _search_indexes(database_url, catalogue_revision)
    catalogue = _catalogue(database_url, catalogue_revision)
    job = model_resources.embedding_job(
        data.engine(), catalogue, database_url=database_url, revision=catalogue_revision, cache_dir=get_settings().cache_dir
    )
    if job is None:
        _fully_embedded.add((database_url, catalogue_revision))  # reruns skip re-reading the cache's indexes
        return _search_indexes(database_url, catalogue_revision)
    return None if job.running or job.error is not None else _search_indexes(database_url, catalogue_revision)


@st.cache_resource(show_spinner="Fitting the price model…", max_entries=1)
def _price_predictor(database_url: str, catalogue_revision: str) -> PricePredictor:
    from core.inference.pricing import PricePredictor

    with session_scope(data.engine()) as session:
        return PricePredictor.fit(queries.listings_frame(session))


def price_predictor() -> PricePredictor:
    return _price_predictor(data.database_url(), data.revision())


def held_out_job_key() -> str:
    return f"held-out:{data.database_url()}:{data.revision()}:{models_key()}"


def held_out() -> dict[str, PredictionSet] | None:
    """The active models on their held-out products: stored with the models when they were shipped
    for the catalogue they were trained on (instant), else computed by a background job (None until
    it is done; `ui.widgets.job_progress(held_out_job_key())` shows how far). Raises ModelFileError like classifier()."""
    database_url, catalogue_revision, key = data.database_url(), data.revision(), models_key()
    catalogue = _catalogue(database_url, catalogue_revision)
    stored = _stored_held_out(key, catalogue.fingerprint())
    if stored is not None:
        return stored
    from core.evaluation.catalogue import held_out_predictions  # torch: only when evaluating

    loaded = classifier()
    job = background.start(
        held_out_job_key(), lambda report: held_out_predictions(loaded, catalogue, cache_dir=get_settings().cache_dir, progress=report)
    )
    return None if job.running or job.error is not None else job.result


@st.cache_resource(show_spinner=False, max_entries=4)
def _stored_held_out(key: str, catalogue_fingerprint: str) -> dict[str, PredictionSet] | None:
    from core.evaluation.held_out import stored_held_out_predictions

    return stored_held_out_predictions(Path(key.split("#")[0]), catalogue_fingerprint=catalogue_fingerprint)
