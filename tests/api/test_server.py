"""The API as it is served: a real Uvicorn on 127.0.0.1 started by `python -m core serve`, its OpenAPI
document and health; and the limits at the door (body size, timeouts, CORS), and the `api-key` command."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.limits import ModelWorker, server_timing
from api.problems import ApiProblem
from benchmarks.common import PostgresServer, serve_api
from cli.main import main
from db.importer import import_catalogue
from db.session import make_engine
from services.api_keys import create_api_key
from tests.api.builders import settings_for, small_catalogue, upload
from tests.app.test_app import open_page
from tests.helpers import use_home
from tests.hostile import jpeg_bytes

EVERY_ENDPOINT = {
    ("post", "/classify"),
    ("post", "/classify/image"),
    ("post", "/classify/text"),
    ("post", "/classify/combined"),
    ("get", "/search"),
    ("post", "/search/photo"),
    ("get", "/products/{product_id}"),
    ("get", "/products/{product_id}/photos/{position}"),
    ("get", "/products"),
    ("get", "/categories"),
    ("get", "/review-queue"),
    ("post", "/products/{product_id}/label"),
    ("post", "/listings"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`python -m core serve` on a free loopback port over a small catalogue; its base URL."""
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    import_catalogue(small_catalogue(tmp_path / "source"), engine=make_engine(url), media_dir=tmp_path / "images")
    log = tmp_path / "server.log"
    with serve_api(tmp_path, url, log) as server:
        yield server.url
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_a_real_server_documents_every_endpoint_and_is_ready(served: str) -> None:
    document = httpx.get(f"{served}/openapi.json", timeout=10).json()
    listed = {(method, path) for path, methods in document["paths"].items() for method in methods}
    assert listed == EVERY_ENDPOINT
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            success = next(status for status in ("200", "201") if status in operation["responses"])
            content = operation["responses"][success].get("content", {})
            assert path.endswith("/photos/{position}") or "example" in content.get("application/json", {}), (method, path)
    assert "Swagger UI" in httpx.get(f"{served}/docs", timeout=10).text
    assert httpx.get(f"{served}/healthz", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{served}/readyz", timeout=120)
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["database"] == {"products": 3, "photos": 3}
    classified = httpx.post(f"{served}/classify", data={"text": "iphone 12 pro 128gb"}, timeout=60).json()
    assert classified["category"] == "Phones, Mobile Phones & Telecoms"
    assert httpx.get(f"{served}/search", params={"q": "garden bench"}, timeout=10).json()["hits"][0]["id"] == "bench"


def test_a_body_over_the_limit_is_refused_before_the_route_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    app = create_app(settings=settings_for(tmp_path, url), engine=make_engine(url), body_limit=4096)
    photo = jpeg_bytes() + bytes(10_000)  # a photo of 10 KB: over this app's 4 KB body limit
    with TestClient(app) as client:
        declared = client.post("/classify", files=[upload("big.jpg", photo)])

        boundary = "limit-test"
        multipart = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; filename="big.jpg"\r\n\r\n'.encode()
            + photo
            + f"\r\n--{boundary}--\r\n".encode()
        )

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as the body streams in
            for start in range(0, len(multipart), 1000):
                yield multipart[start : start + 1000]

        streamed = client.post("/classify", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        small = client.post("/classify", data={"text": "x" * 100})
    for refused in (declared, streamed):
        assert refused.status_code == 413 and refused.headers["content-type"] == "application/problem+json"
        assert "limit" in refused.json()["detail"]
    assert small.status_code != 413


def test_model_work_that_outlasts_the_timeout_frees_the_request() -> None:
    worker = ModelWorker(timeout_seconds=0.2)

    async def ask() -> tuple[float, ApiProblem | None]:
        started = time.monotonic()
        try:
            await worker.run(lambda: time.sleep(2))
        except ApiProblem as problem:
            return time.monotonic() - started, problem
        return time.monotonic() - started, None

    waited, problem = anyio.run(ask)
    assert problem is not None and problem.status == 503 and "longer than 0.2 s" in problem.detail
    assert waited < 1.5
    assert anyio.run(worker.run, lambda: 42) == 42


def test_server_timing_headers_are_read_metric_by_metric() -> None:
    assert server_timing("app;dur=21.9, model;dur=19.5") == {"app": 21.9, "model": 19.5}
    assert server_timing('cache;desc="hit";dur=0.2,db;dur=3') == {"cache": 0.2, "db": 3.0}
    assert server_timing("miss, app;dur=1") == {"app": 1.0}  # a metric without a duration is no figure
    assert server_timing("") == {}


def test_cors_is_off_unless_origins_are_configured(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    engine = make_engine(url)
    origin = {"Origin": "https://analysts.example"}
    with TestClient(create_app(settings=settings_for(tmp_path, url), engine=engine)) as closed:
        assert "access-control-allow-origin" not in closed.get("/healthz", headers=origin).headers
    opened_settings = settings_for(tmp_path, url, api_cors_origins=("https://analysts.example",))
    with TestClient(create_app(settings=opened_settings, engine=engine)) as opened:
        assert opened.get("/healthz", headers=origin).headers["access-control-allow-origin"] == "https://analysts.example"
        other = opened.get("/healthz", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


def test_api_key_command_creates_lists_and_revokes(app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api-key", "create", "ana"]) == 0
    key = capsys.readouterr().out.splitlines()[0]
    assert key.startswith("mkb_") and len(key) > 40
    assert main(["api-key", "create", "ana"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["api-key", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["keys"]
    assert [(entry["name"], entry["revoked_at"]) for entry in listed] == [("ana", None)] and key.startswith(listed[0]["prefix"])
    assert key not in json.dumps(listed)
    assert main(["api-key", "revoke", "ana"]) == 0
    assert main(["api-key", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["keys"][0]["revoked_at"] is not None
    assert main(["api-key", "revoke", "bob"]) == 1


def test_the_api_and_the_app_share_a_postgresql_catalogue(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances on one catalogue: a label fixed through a real API server shows in the app on its next page run."""
    url = postgres_server.new_database()
    engine = make_engine(url)
    import_catalogue(small_catalogue(tmp_path / "source"), engine=engine, media_dir=tmp_path / "images")
    key = create_api_key(engine, "ana")
    use_home(monkeypatch, tmp_path, database_url=url)
    app = open_page("pages/browse.py")
    app.selectbox(key="browse_top").set_value("Baby & Kids Stuff").run()
    assert "1 products" in app.caption[0].value

    log = tmp_path / "server.log"
    with serve_api(tmp_path, url, log) as server:
        product = httpx.get(f"{server.url}/products/phone", timeout=30).json()
        changed = httpx.post(
            f"{server.url}/products/phone/label",
            json={
                "category": "Baby & Kids Stuff / Prams, Strollers & Pushchairs",
                "label_version": product["label_version"],
                "reason": "a toy phone",
            },
            headers={"X-API-Key": key},
            timeout=30,
        )
        assert changed.status_code == 200, changed.text
        assert httpx.get(f"{server.url}/search", params={"q": "iphone", "category": "baby & kids stuff"}, timeout=30).json()["hits"]
    app.run()
    assert not app.exception and "2 products" in app.caption[0].value
    assert "Traceback" not in log.read_text()
