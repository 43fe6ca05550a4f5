"""The catalogue over HTTP: products (one, or a page of them, with photo URLs the API serves), the
categories, and search in every mode with the app's filters."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from api.docs import answer
from api.inputs import ReceivedPhoto, checked_text, open_photos, read_photos
from api.problems import ApiProblem
from api.security import reader
from core.data.uploads import MAX_QUERY_CHARS
from services import catalogue
from services.catalogue import ProductFilters, ProductView
from services.search import SearchInputError, search

router = APIRouter(tags=["catalogue"], dependencies=[Depends(reader)])

PRODUCT_EXAMPLE = {
    "id": "1f3bb42e-cc1d-412a-b01a-7c53b5c20a9b",
    "name": "Beautifully carved oak round table",
    "category": "Home & Garden / Dining, Living Room Furniture / Dining Tables",
    "price": 120.0,
    "location": "Leeds, West Yorkshire",
    "description": "Solid oak, seats four.",
    "label_version": 1,
    "source": "import",
    "photos": ["/products/1f3bb42e-cc1d-412a-b01a-7c53b5c20a9b/photos/0"],
}
SEARCH_EXAMPLE = {
    "mode": "keyword",
    "hits": [
        {
            "id": PRODUCT_EXAMPLE["id"],
            "name": PRODUCT_EXAMPLE["name"],
            "category": PRODUCT_EXAMPLE["category"],
            "price": 120.0,
            "score": 7.4211,
            "why": "keyword score 7.42",
        }
    ],
    "took_ms": 3.1,
}
MAX_LIMIT, MAX_PAGE_SIZE = 1_000, 200


def product_json(product: ProductView) -> dict[str, object]:
    return {
        "id": product.id,
        "name": product.name,
        "category": product.category,
        "price": float(product.price),
        "location": product.location,
        "description": product.description,
        "label_version": product.label_version,
        "source": product.source,
        "photos": [f"/products/{product.id}/photos/{position}" for position in range(len(product.image_paths))],
    }


def _filters(category: str | None, min_price: Decimal | None, max_price: Decimal | None, location: str | None) -> ProductFilters:
    if min_price is not None and max_price is not None and min_price > max_price:
        raise ApiProblem(422, "min_price is above max_price", field="min_price")
    return ProductFilters(category=category or None, min_price=min_price, max_price=max_price, location=location or None)


Category = Annotated[str | None, Query(max_length=500, description="a category path: products at or below it", examples=["Home & Garden"])]
MinPrice = Annotated[Decimal | None, Query(ge=0, le=100_000_000, description="pounds")]
MaxPrice = Annotated[Decimal | None, Query(ge=0, le=100_000_000, description="pounds")]
Location = Annotated[str | None, Query(max_length=200, description="part of the location", examples=["Leeds"])]


@router.get("/products/{product_id}", responses=answer(PRODUCT_EXAMPLE, "the product"), summary="One product")
async def get_product(request: Request, product_id: str) -> dict[str, object]:
    found = await run_in_threadpool(catalogue.product, request.app.state.engine, product_id[:100])
    if found is None:
        raise ApiProblem(404, f"no product {product_id[:100]!r} in the catalogue", field="product_id")
    return product_json(found)


@router.get("/products/{product_id}/photos/{position}", response_class=FileResponse, summary="A product's photo (JPEG)")
async def get_photo(request: Request, product_id: str, position: int) -> FileResponse:
    """Photos are found by product and position in the catalogue, never by a path the caller names."""
    found = await run_in_threadpool(catalogue.product, request.app.state.engine, product_id[:100])
    if found is None or not 0 <= position < len(found.image_paths):
        raise ApiProblem(404, "no such photo", field="position")
    path = request.app.state.settings.media_dir / found.image_paths[position]
    if not path.is_file():
        raise ApiProblem(404, "the photo's file is missing on the server", field="position")
    return FileResponse(path, media_type="image/jpeg")


@router.get(
    "/products",
    responses=answer({"products": [PRODUCT_EXAMPLE], "total": 6082, "page": 1, "page_size": 24, "pages": 254}, "a page of products"),
    summary="A page of products, optionally in one category",
)
async def list_products(
    request: Request,
    category: Category = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 24,
) -> dict[str, object]:
    found = await run_in_threadpool(
        catalogue.browse, request.app.state.engine, filters=_filters(category, None, None, None), page=page, page_size=page_size
    )
    return {
        "products": [product_json(product) for product in found.products],
        "total": found.total,
        "page": found.page,
        "page_size": found.page_size,
        "pages": found.pages,
    }


@router.get(
    "/categories",
    responses=answer({"categories": ["Appliances", "Appliances / Dishwashers"]}, "every category path"),
    summary="Every category path",
)
async def list_categories(request: Request) -> dict[str, list[str]]:
    return {"categories": await run_in_threadpool(catalogue.categories, request.app.state.engine)}


async def _search(request: Request, *, photos: list[ReceivedPhoto] | None = None, **arguments: object) -> dict[str, object]:
    resources = request.app.state.resources
    mode = arguments["mode"]

    def work() -> dict[str, object]:
        if photos:
            arguments["photos"] = open_photos(photos)
        indexes = None
        if mode != "keyword":
            indexes = resources.search_indexes()
            if indexes is None:
                raise ApiProblem(503, "the catalogue is being embedded for search by meaning and photo; try again in a few minutes")
        try:
            return search(resources.engine, indexes=indexes, **arguments).as_json()  # type: ignore[arg-type]
        except SearchInputError as error:
            raise ApiProblem(422, str(error), field="q" if mode != "photo" else "photo") from error

    if mode == "keyword":  # no model involved: it need not queue behind classifications
        return await run_in_threadpool(work)
    result: dict[str, object] = await request.app.state.model_worker.run(work)
    return result


@router.get("/search", responses=answer(SEARCH_EXAMPLE, "the hits, closest first"), summary="Search by keyword, meaning or both")
async def search_text(
    request: Request,
    q: Annotated[str, Query(description="the words to search for", examples=["oak table"])] = "",
    mode: Annotated[str, Query(pattern="^(keyword|semantic|hybrid)$")] = "keyword",
    category: Category = None,
    min_price: MinPrice = None,
    max_price: MaxPrice = None,
    location: Location = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
) -> dict[str, object]:
    query = checked_text(q, field="q", limit=MAX_QUERY_CHARS)
    filters = _filters(category, min_price, max_price, location)
    return await _search(request, mode=mode, query=query, filters=filters, limit=limit)


@router.post("/search/photo", responses=answer({**SEARCH_EXAMPLE, "mode": "photo"}, "the hits, closest first"), summary="Search by photo")
async def search_photo(
    request: Request,
    photo: Annotated[UploadFile, File(description="a photo of the item, 10 MB at most")],
    category: Annotated[str | None, Form(max_length=500)] = None,
    min_price: Annotated[Decimal | None, Form(ge=0, le=100_000_000)] = None,
    max_price: Annotated[Decimal | None, Form(ge=0, le=100_000_000)] = None,
    location: Annotated[str | None, Form(max_length=200)] = None,
    limit: Annotated[int, Form(ge=1, le=MAX_LIMIT)] = 20,
) -> dict[str, object]:
    photos = await read_photos([photo], field="photo")
    if not photos:
        raise ApiProblem(422, "send a photo", field="photo")
    filters = _filters(category, min_price, max_price, location)
    return await _search(request, mode="photo", photos=photos, filters=filters, limit=limit)
