"""The HTTP API's writes on a small catalogue of their own: keys (missing, unknown, revoked), label changes
with the app's optimistic locking and an audit trail, listings added whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.enums import LabelSource
from db.session import session_scope
from db.tables import LabelHistory, Product
from services.api_keys import create_api_key, list_api_keys, revoke_api_key
from services.review_queue import QueueEntry, queue_json, replace_queue
from tests.api.builders import upload
from tests.api.conftest import WritableApi
from tests.helpers import row_counts
from tests.hostile import HOSTILE_TEXTS, HOSTILE_UPLOADS, jpeg_bytes

PROBLEM = "application/problem+json"


def label_of(api: WritableApi, product_id: str) -> tuple[str, int]:
    with session_scope(api.engine) as session:
        product = session.scalars(select(Product).where(Product.id == product_id)).one()
        return product.category.path, product.label_version


def test_a_label_change_needs_a_live_key_and_the_version_the_caller_saw(writable_api: WritableApi) -> None:
    api, change = writable_api, {"category": "Home & Garden", "label_version": 1, "reason": "it is garden furniture"}
    before, counts = label_of(api, "pram"), row_counts(api.engine)
    for headers in ({}, {"X-API-Key": "mkb_not-a-key"}, {"Authorization": "Bearer nonsense"}):
        refused = api.client.post("/products/pram/label", json=change, headers=headers)
        assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM and "WWW-Authenticate" in refused.headers
    assert label_of(api, "pram") == before and row_counts(api.engine) == counts

    changed = api.client.post("/products/pram/label", json=change, headers={"Authorization": f"Bearer {api.key}"})
    assert changed.status_code == 200 and changed.json() == {"id": "pram", "category": "Home & Garden", "label_version": 2}
    assert label_of(api, "pram") == ("Home & Garden", 2)
    with session_scope(api.engine) as session:
        history = session.scalars(select(LabelHistory).order_by(LabelHistory.id.desc())).first()
        assert history is not None
        assert (history.source, history.changed_by, history.reason) == (LabelSource.API, "ana", "it is garden furniture")

    stale = api.client.post("/products/pram/label", json={**change, "category": "Appliances"}, headers={"X-API-Key": api.key})
    assert stale.status_code == 409 and stale.json()["field"] == "label_version" and "changed by someone else" in stale.json()["detail"]
    assert label_of(api, "pram") == ("Home & Garden", 2) and row_counts(api.engine)[2] == counts[2] + 1

    for body, status, field in (
        ({"category": "Telepathy", "label_version": 2}, 422, "category"),
        ({"category": "Appliances"}, 422, "label_version"),
        ({"category": "Appliances", "label_version": "two"}, 422, "label_version"),
    ):
        refused = api.client.post("/products/pram/label", json=body, headers={"X-API-Key": api.key})
        assert (refused.status_code, refused.json().get("field")) == (status, field), refused.text
    assert api.client.post("/products/nothing/label", json=change, headers={"X-API-Key": api.key}).status_code == 404

    revoke_api_key(api.engine, "ana")
    revoked = api.client.post("/products/pram/label", json={**change, "label_version": 2}, headers={"X-API-Key": api.key})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    assert label_of(api, "pram") == ("Home & Garden", 2)


def test_keys_are_stored_as_hashes_and_named_once(writable_api: WritableApi) -> None:
    from db.tables import ApiKey

    with session_scope(writable_api.engine) as session:
        stored = session.scalars(select(ApiKey)).one()
        assert writable_api.key not in (stored.key_hash, stored.prefix) and writable_api.key.startswith(stored.prefix)
    with pytest.raises(ValueError, match="exists already"):
        create_api_key(writable_api.engine, "ana")
    with pytest.raises(ValueError, match="name"):
        create_api_key(writable_api.engine, " \t")
    assert [info.name for info in list_api_keys(writable_api.engine)] == ["ana"]


def test_a_listing_is_added_with_its_photos_and_judged_by_the_models(writable_api: WritableApi) -> None:
    api, counts = writable_api, row_counts(writable_api.engine)
    form = {"name": "Garden bench, teak", "category": "Home & Garden", "price": "£45.50", "description": "Seats two.", "location": "York"}
    without_key = api.client.post("/listings", data=form, files=[upload("bench.jpg", jpeg_bytes())])
    assert without_key.status_code == 401 and row_counts(api.engine) == counts

    added = api.client.post("/listings", data=form, files=[upload("bench.jpg", jpeg_bytes())], headers={"X-API-Key": api.key})
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["category"] == "Home & Garden" and body["predicted_category"] and 0 <= body["confidence"] <= 1
    assert row_counts(api.engine) == (counts[0] + 1, counts[1] + 1, counts[2] + 1)
    shown = api.client.get(body["url"]).json()
    assert (shown["name"], shown["price"], shown["location"], shown["source"]) == ("Garden bench, teak", 45.5, "York", "api")
    assert api.client.get(shown["photos"][0]).headers["content-type"] == "image/jpeg"
    with session_scope(api.engine) as session:
        history = session.scalars(select(LabelHistory).where(LabelHistory.product_id == body["id"])).one()
        assert (history.source, history.changed_by) == (LabelSource.API, "ana")


def test_a_listing_with_any_bad_part_writes_nothing(writable_api: WritableApi) -> None:
    api, headers, counts = writable_api, {"X-API-Key": writable_api.key}, row_counts(writable_api.engine)
    form = {"name": "Garden bench", "category": "Home & Garden", "price": "20"}
    for case in HOSTILE_UPLOADS:
        if case.refusal is None:
            continue
        refused = api.client.post(
            "/listings", data=form, files=[upload("good.jpg", jpeg_bytes()), upload(case.name, case.make())], headers=headers
        )
        assert refused.status_code in (413, 422) and refused.json()["field"] == "photos" and case.refusal in refused.json()["detail"]
    for name, text in HOSTILE_TEXTS.items():
        if text.strip() and len(text) <= 500:
            continue  # a usable title, however odd: stored as text (tested below)
        refused = api.client.post("/listings", data={**form, "name": text}, headers=headers)
        assert refused.status_code == 422 and refused.json()["field"] == "name", name
    for field, value in (("price", "free to a good home"), ("price", "-5"), ("category", "Telepathy"), ("description", "x" * 20_001)):
        refused = api.client.post("/listings", data={**form, field: value}, headers=headers)
        assert refused.status_code == 422 and refused.json()["field"] == field, (field, refused.text)
    assert row_counts(api.engine) == counts
    assert len(list((api.home / "images").rglob("*.jpg"))) == counts[1]


def test_odd_text_in_a_listing_comes_back_as_plain_json(writable_api: WritableApi) -> None:
    headers = {"X-API-Key": writable_api.key}
    for name in ("html", "script", "markdown", "sql", "emoji", "right-to-left"):
        text = HOSTILE_TEXTS[name]
        added = writable_api.client.post("/listings", data={"name": text, "category": "Home & Garden", "price": "1"}, headers=headers)
        assert added.status_code == 201, (name, added.text)
        assert writable_api.client.get(added.json()["url"]).json()["name"]  # stored and served, cleaned of the Gumtree suffix only


def test_the_review_queue_has_the_cli_shape(writable_api: WritableApi) -> None:
    replace_queue(
        writable_api.engine,
        [
            QueueEntry(
                "pram", 0.01, "Baby & Kids Stuff", "Home & Garden", [("Home & Garden", 0.9)], is_issue=True, source="cross-validation"
            ),
            QueueEntry("bench", 0.2, "Home & Garden", "Appliances", [("Appliances", 0.5)], is_issue=False, source="cross-validation"),
        ],
    )
    listed = writable_api.client.get("/review-queue", params={"limit": 1}).json()
    assert listed == queue_json(writable_api.engine, limit=1) and [item["product_id"] for item in listed["items"]] == ["pram"]
    assert set(listed["items"][0]) == {"product_id", "name", "current", "suggested", "score", "prediction_set"}


def test_reads_can_be_closed_by_a_setting(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from db.session import make_engine
    from tests.api.builders import settings_for

    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    engine = make_engine(url)
    key = create_api_key(engine, "ana")
    with TestClient(create_app(settings=settings_for(tmp_path, url, api_reads_need_key=True), engine=engine)) as client:
        assert client.get("/categories").status_code == 401
        assert client.get("/categories", headers={"X-API-Key": key}).json() == {"categories": []}
        assert client.get("/healthz").status_code == 200  # health stays open for load balancers
