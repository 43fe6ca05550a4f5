"""The HTTP API's reads on the shared catalogue: right answers, the same as in-process, and every hostile
upload and text answered with a problem (never a traceback, never a 5xx)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from api.limits import server_timing
from core.data.cleaning import model_text
from core.data.uploads import MAX_QUERY_CHARS, MAX_TEXT_CHARS
from core.search.keyword_query import query_terms
from db.session import session_scope
from db.tables import Product
from tests.api.builders import upload
from tests.helpers import ImportedCatalogue
from tests.hostile import HOSTILE_TEXTS, HOSTILE_UPLOADS

PROBLEM = "application/problem+json"


def shared_products(catalogue: ImportedCatalogue, count: int) -> list[Product]:
    with session_scope(catalogue.engine) as session:
        statement = select(Product).where(Product.images.any()).order_by(Product.pk).limit(count)
        products = list(session.scalars(statement))
        for product in products:
            _ = product.category.path, [image.file_path for image in product.images]  # loaded while the session is open
        session.expunge_all()
        return products


def test_shared_listings_classify_to_their_category_as_in_process(
    shared_api: TestClient,
    shared_catalogue: ImportedCatalogue,
    shipped_classifier,  # type: ignore[no-untyped-def]
) -> None:
    products = shared_products(shared_catalogue, 12)
    right = 0
    for product in products:
        path = shared_catalogue.home / "images" / product.images[0].file_path
        text = f"{product.name}\n{product.description}"
        response = shared_api.post("/classify", files=[upload(path.name, path.read_bytes())], data={"text": text})
        assert response.status_code == 200, response.text
        with Image.open(path) as image:
            assert response.json() == shipped_classifier.classify(images=[image.convert("RGB")], text=text).as_json()
        right += response.json()["category"] == product.category.path.split(" / ")[0]
        for kind in ("image", "text", "combined"):
            one = shared_api.post(f"/classify/{kind}", files=[upload(path.name, path.read_bytes())], data={"text": text}).json()
            assert one["model"] == kind and len(one["top"]) == 5
    assert right >= 10, f"{right} of {len(products)} shared listings classified to their category"


def test_server_timing_splits_the_model_from_the_http_layer(shared_api: TestClient, shared_catalogue: ImportedCatalogue) -> None:
    product = shared_products(shared_catalogue, 1)[0]
    path = shared_catalogue.home / "images" / product.images[0].file_path
    answered = shared_api.post("/classify", files=[upload(path.name, path.read_bytes())], data={"text": product.name})
    classified = server_timing(answered.headers["server-timing"])
    assert set(classified) == {"app", "model"} and 0 < classified["model"] <= classified["app"]
    searched_response = shared_api.get("/search", params={"q": product.name, "mode": "hybrid"})
    assert searched_response.status_code == 200, searched_response.text
    searched = server_timing(searched_response.headers["server-timing"])
    assert set(searched) == {"app", "model"} and searched["model"] <= searched["app"]
    assert set(server_timing(shared_api.get("/healthz").headers["server-timing"])) == {"app"}  # no model work: no model metric
    refused = shared_api.post("/classify/image", data={"text": product.name})  # refused before any model work
    assert refused.status_code == 422 and set(server_timing(refused.headers["server-timing"])) == {"app"}


def test_search_finds_a_product_in_every_mode(shared_api: TestClient, shared_catalogue: ImportedCatalogue) -> None:
    product = shared_products(shared_catalogue, 1)[0]
    keyword = shared_api.get("/search", params={"q": product.name, "limit": 10}).json()
    assert keyword["mode"] == "keyword" and product.id in [hit["id"] for hit in keyword["hits"]]
    assert set(keyword["hits"][0]) == {"id", "name", "category", "price", "score", "why"} and keyword["took_ms"] >= 0
    for mode in ("semantic", "hybrid"):
        found = shared_api.get("/search", params={"q": product.name, "mode": mode, "limit": 7}).json()
        assert found["mode"] == mode and len(found["hits"]) == 7
    top = product.category.path.split(" / ")[0]
    filtered = shared_api.get("/search", params={"q": "table", "mode": "semantic", "category": top, "max_price": "50"}).json()
    assert filtered["hits"] and all(hit["category"].startswith(top) and hit["price"] <= 50 for hit in filtered["hits"])
    path = shared_catalogue.home / "images" / product.images[0].file_path
    by_photo = shared_api.post("/search/photo", files=[upload(path.name, path.read_bytes(), field="photo")], data={"limit": "3"}).json()
    assert by_photo["mode"] == "photo" and by_photo["hits"][0]["id"] == product.id


def test_products_categories_and_photos(shared_api: TestClient, shared_catalogue: ImportedCatalogue) -> None:
    product = shared_products(shared_catalogue, 1)[0]
    one = shared_api.get(f"/products/{product.id}").json()
    assert one["name"] == product.name and one["category"] == product.category.path and one["label_version"] == product.label_version
    assert len(one["photos"]) == len(product.images)
    served = shared_api.get(one["photos"][0])
    assert served.headers["content-type"] == "image/jpeg"
    assert served.content == (shared_catalogue.home / "images" / product.images[0].file_path).read_bytes()

    categories = shared_api.get("/categories").json()["categories"]
    assert len([path for path in categories if " / " not in path]) == 13
    page = shared_api.get("/products", params={"category": "Appliances", "page": 2, "page_size": 5}).json()
    assert page["page"] == 2 and len(page["products"]) == 5 and all(item["category"].startswith("Appliances") for item in page["products"])
    assert page["pages"] == -(-page["total"] // 5)

    for path in (
        "/products/no-such-product",
        f"/products/{product.id}/photos/{len(product.images)}",
        "/products/..%2F..%2Fcatalogue.db/photos/0",
        "/products/%2Fetc%2Fpasswd/photos/0",
    ):
        missing = shared_api.get(path)
        assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM, path


@pytest.mark.parametrize("case", HOSTILE_UPLOADS, ids=[case.name for case in HOSTILE_UPLOADS])
def test_hostile_uploads_get_a_problem_naming_the_field(shared_api: TestClient, case) -> None:  # type: ignore[no-untyped-def]
    response = shared_api.post("/classify", files=[upload(case.name, case.make())], data={"text": "a sofa"})
    if case.refusal is None:
        assert response.status_code == 200 and response.json()["model"] == "combined"
        return
    assert response.status_code in (413, 422) and response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["field"] == "photos" and case.refusal in problem["detail"] and "Traceback" not in response.text


def test_hostile_texts_never_fail_the_server(shared_api: TestClient) -> None:
    for name, text in HOSTILE_TEXTS.items():
        classified = shared_api.post("/classify", data={"text": text})
        usable = bool(model_text("", text)) and len(text) <= MAX_TEXT_CHARS
        assert classified.status_code == (200 if usable else 422), (name, classified.text)
        if not usable:
            assert classified.headers["content-type"] == PROBLEM and classified.json()["field"] == "text"
        query = text[: 2 * MAX_QUERY_CHARS]  # a URL holds no 100 KB; twice the limit is refused all the same
        for mode in ("keyword", "semantic", "hybrid"):
            found = shared_api.get("/search", params={"q": query, "mode": mode, "limit": 5})
            usable = bool(query_terms(query)) and len(query) <= MAX_QUERY_CHARS
            assert found.status_code == (200 if usable else 422), (name, mode, found.text)
            assert found.status_code == 422 or len(found.json()["hits"]) <= 5


def test_bad_parameters_are_problems_naming_the_field(shared_api: TestClient) -> None:
    for params, field in (
        ({"q": "sofa", "limit": 0}, "limit"),
        ({"q": "sofa", "mode": "telepathy"}, "mode"),
        ({"q": "sofa", "min_price": "lots"}, "min_price"),
        ({"q": "sofa", "min_price": 10, "max_price": 5}, "min_price"),
    ):
        response = shared_api.get("/search", params=params)
        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM and response.json()["field"] == field
    too_many = [upload(f"{index}.jpg", b"x") for index in range(9)]
    response = shared_api.post("/classify", files=too_many)
    assert response.status_code == 422 and response.json()["field"] == "photos" and "at most 8" in response.json()["detail"]
    assert shared_api.post("/classify/text", data={"text": " "}).json()["field"] == "text"
    assert shared_api.post("/classify/image", data={"text": "a sofa"}).json()["field"] == "photos"
