"""The models and search indexes a long-running process shares between requests (the HTTP API; the
app caches the same things with Streamlit's own cache in ui.resources). Each is built once, by one
thread while the others wait, and rebuilt only when its inputs change: the models folder's manifest,
or the catalogue's revision. Embedding a catalogue the cache lacks runs in the background
(core.runtime.background, `embedding_job`, which the app's search starts too); until it is done
`search_indexes()` returns None."""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine

from core.runtime import background
from core.settings import Settings
from db import queries
from db.session import session_scope

if TYPE_CHECKING:
    from core.data.catalogue import Catalogue
    from core.inference.category_classifier import CategoryClassifier
    from core.search.indexes import SearchIndexes

T = TypeVar("T")


def models_key(folder: Path) -> str:
    """The models folder and its manifest's hash: changes when another set becomes active."""
    manifest = folder / "manifest.json"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16] if manifest.is_file() else "none"
    return f"{folder}#{digest}"


def embedding_job_key(database_url: str, revision: str) -> str:
    """The background job that embeds this catalogue revision (core.runtime.background)."""
    return f"embeddings:{database_url}:{revision}"


def embedding_job(engine: Engine, catalogue: Catalogue, *, database_url: str, revision: str, cache_dir: Path) -> background.JobState | None:
    """The background job embedding whatever of `catalogue` the vectors lack (the cache's on SQLite, the
    catalogue's own on PostgreSQL), started here if none is on; None when they are all there. The arrays
    stay in the cache or the database, not in the job."""
    from services.catalogue_vectors import catalogue_embedding_progress, embed_for_search

    key = embedding_job_key(database_url, revision)
    job = background.status(key)
    if job is None and not catalogue_embedding_progress(engine, catalogue, cache_dir=cache_dir).complete:
        job = background.start(key, lambda report: embed_for_search(engine, catalogue, cache_dir=cache_dir, progress=report))
    return job


class ModelResources:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._built: dict[str, tuple[str, Any]] = {}  # name -> (the key it was built for, the thing)
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in ("classifier", "catalogue", "indexes")}

    def _cached(self, name: str, key: str, build: Callable[[], T]) -> T:
        with self._locks[name]:
            built = self._built.get(name)
            if built is None or built[0] != key:
                self._built[name] = (key, build())
            return self._built[name][1]

    def models_key(self) -> str:
        return models_key(self.settings.models_dir)

    def classifier(self) -> CategoryClassifier:
        """Raises core.models.checkpoints.ModelFileError (a message for the caller) when the models cannot load."""
        from core.inference.category_classifier import CategoryClassifier

        def load() -> CategoryClassifier:
            classifier = CategoryClassifier(self.settings.models_dir)
            gc.freeze()  # the models live as long as the process: the collector stops re-scanning them on every request
            return classifier

        return self._cached("classifier", self.models_key(), load)

    def revision(self) -> str:
        with session_scope(self.engine) as session:
            return queries.catalogue_revision(session)

    def _catalogue(self, revision: str) -> Catalogue:
        from services.catalogue import models_catalogue

        return self._cached("catalogue", revision, lambda: models_catalogue(self.engine, settings=self.settings))

    def search_indexes(self) -> SearchIndexes | None:
        """The catalogue's vector indexes, or None while a background job embeds what the cache lacks (started here)."""
        from services.catalogue_vectors import catalogue_indexes

        revision, cache_dir = self.revision(), self.settings.cache_dir  # one query: the revision keys everything below
        built = self._built.get("indexes")
        if built is not None and built[0] == revision:
            return built[1]
        catalogue = self._catalogue(revision)
        job = embedding_job(self.engine, catalogue, database_url=self.settings.database_url, revision=revision, cache_dir=cache_dir)
        if job is not None and (job.running or job.error is not None):
            return None
        return self._cached("indexes", revision, lambda: catalogue_indexes(self.engine, catalogue, cache_dir=cache_dir))
