"""Fixtures only: the API over the shared catalogue (reads), and over a small catalogue of its own with a
live key (writes), each through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from db.importer import import_catalogue
from db.session import make_engine
from services.api_keys import create_api_key
from tests.api.builders import settings_for, small_catalogue
from tests.helpers import ImportedCatalogue


@pytest.fixture(scope="module")
def shared_api(shared_catalogue: ImportedCatalogue, shared_indexes) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The API on the shared catalogue, its embeddings already cached (read-only tests)."""
    app = create_app(settings=settings_for(shared_catalogue.home, shared_catalogue.database_url), engine=shared_catalogue.engine)
    with TestClient(app) as client:
        yield client


@dataclass
class WritableApi:
    client: TestClient
    engine: Engine
    home: Path
    key: str  # a live key held by "ana"


@pytest.fixture
def writable_api(tmp_path: Path, catalogue_url: str) -> Iterator[WritableApi]:
    """The API on a small catalogue of this test's own (on each backend), and a live key."""
    url = catalogue_url
    engine = make_engine(url)
    import_catalogue(small_catalogue(tmp_path / "source"), engine=engine, media_dir=tmp_path / "images")
    key = create_api_key(engine, "ana")
    with TestClient(create_app(settings=settings_for(tmp_path, url), engine=engine)) as client:
        yield WritableApi(client, engine, tmp_path, key)
