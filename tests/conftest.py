"""Fixtures only (builders are in tests/helpers.py): the real data set (skipped, or failed under CI, when absent), generated
catalogues with known defects, and one full import of the shared data per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.common import PostgresServer
from core.settings import PROJECT_ROOT
from db.importer import import_catalogue
from db.session import make_engine
from tests.helpers import BACKENDS, REQUIRE_DATA_FLAG, REQUIRE_POSTGRES_FLAG, ImportedCatalogue, generated_catalogue, shared_data_dir


@pytest.fixture(scope="session")
def marketplace_dir() -> Path:
    """The shared data set; a skip with the reason where it is absent, a failure when CI requires it."""
    path = shared_data_dir()
    if not (path / "Products.csv").is_file():
        message = f"the marketplace data set is not at {path} (set MARKETPLACE_DATA)"
        if os.environ.get(REQUIRE_DATA_FLAG) == "1":
            pytest.fail(message + f"; {REQUIRE_DATA_FLAG}=1 requires it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_catalogue(marketplace_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ImportedCatalogue:
    """The full shared data set imported once per session into a temporary SQLite file."""
    home = tmp_path_factory.mktemp("shared_catalogue")
    url = f"sqlite:///{home / 'catalogue.db'}"
    engine = make_engine(url)
    report = import_catalogue(marketplace_dir, engine=engine, media_dir=home / "images")
    return ImportedCatalogue(engine, url, home, report)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The session's own PostgreSQL server; a skip with the reason where it cannot start, a failure when CI requires it."""
    try:
        server = PostgresServer(tmp_path_factory.mktemp("postgres") / "data")
    except Exception as error:  # noqa: BLE001 - whatever stops the server from starting is the skip's reason
        message = f"PostgreSQL could not start ({type(error).__name__}: {error})"
        if os.environ.get(REQUIRE_POSTGRES_FLAG) == "1":
            pytest.fail(message + f"; {REQUIRE_POSTGRES_FLAG}=1 requires it")
        pytest.skip(message)
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalogue database on each backend: a SQLite file, and a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalogue.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def app_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Point the settings (and so the app and CLI) at an empty home folder of this test's own."""
    monkeypatch.setenv("MARKETPLACE_HOME", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MARKETPLACE_MEDIA", raising=False)
    yield tmp_path


@pytest.fixture(scope="session")
def text_encoder():  # type: ignore[no-untyped-def]
    """The real MiniLM encoder from its wheel, loaded once per test session."""
    from core.encoders.features import load_text_encoder

    return load_text_encoder(128)


@pytest.fixture(scope="session")
def shipped_classifier():  # type: ignore[no-untyped-def]
    """The shipped models under models/, loaded once per test session."""
    from core.inference.category_classifier import CategoryClassifier

    return CategoryClassifier(PROJECT_ROOT / "models")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A generated catalogue with a finished image, text and combined run (real encoders), once per session."""
    from core.training.hyperparameters import DEFAULTS, with_overrides
    from core.training.trainer import Trainer
    from db.queries import training_catalogue
    from db.runs import DatabaseRunRecorder
    from db.session import session_scope

    home = tmp_path_factory.mktemp("training")
    source = generated_catalogue(home / "source")
    engine = make_engine(f"sqlite:///{home / 'catalogue.db'}")
    import_catalogue(source, engine=engine, media_dir=home / "media")
    with session_scope(engine) as session:
        catalogue = training_catalogue(session, media_dir=home / "media")
    trainer = Trainer(catalogue, recorder=DatabaseRunRecorder(engine), runs_dir=home / "runs", cache_dir=home / "cache")
    small = {"val_fraction": 0.25, "test_fraction": 0.25, "batch_size": 8}
    image = trainer.train_image(with_overrides(DEFAULTS["image"], epochs=6, lr=0.01, **small))
    text = trainer.train_text(with_overrides(DEFAULTS["text"], epochs=6, finetune_layers=1, **small))
    combined = trainer.train_combined(text.checkpoint, with_overrides(DEFAULTS["combined"], epochs=12, lr=0.01, step_size=6, **small))
    return {"home": home, "source": source, "engine": engine, "trainer": trainer, "image": image, "text": text, "combined": combined}


@pytest.fixture(scope="session")
def shared_indexes(shared_catalogue: ImportedCatalogue):  # type: ignore[no-untyped-def]
    """Vector indexes of the full shared catalogue, embedded once per session into its home's
    cache (where the app, pointed at that home, finds them too)."""
    from core.search.indexes import build_search_indexes
    from db.queries import training_catalogue
    from db.session import session_scope

    with session_scope(shared_catalogue.engine) as session:
        catalogue = training_catalogue(session, media_dir=shared_catalogue.home / "images")
    return build_search_indexes(catalogue, cache_dir=shared_catalogue.home / "cache")


# Markers (registered in pyproject.toml), set from the fixtures a test uses so that nobody has to
# remember them: `pytest -m "not slow and not browser"` is the day-to-day loop.
SHARED_DATA_FIXTURES = {"marketplace_dir"}
SLOW_FIXTURES = {"shared_catalogue", "trained"}  # the full shared import with its embeddings; training a catalogue


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SHARED_DATA_FIXTURES:
            item.add_marker(pytest.mark.needs_data)
        if used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        callspec = getattr(item, "callspec", None)
        if "postgres_server" in used or (callspec is not None and "postgresql" in callspec.params.values()):
            item.add_marker(pytest.mark.postgres)
