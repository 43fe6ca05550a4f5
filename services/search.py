"""Catalogue search in four modes, with the same filters: keyword (the database's full-text index), semantic (sentence
embeddings), photo (image embeddings) and hybrid (keyword + semantic by reciprocal rank fusion).

Every hit says why it is there: its score, and for keyword matches the words that matched.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.search.keyword_query import query_terms
from core.search.vector_index import FilteredSearch, reciprocal_rank_fusion
from db.keyword_search import keyword_search
from db.queries import ProductFilters, ProductView, filtered_product_ids, products_by_ids
from db.session import session_scope

if TYPE_CHECKING:  # the vector side loads torch; keyword search must not wait for it
    from core.search.indexes import SearchIndexes

SEARCH_MODES = ("keyword", "semantic", "photo", "hybrid")
HYBRID_DEPTH = 100  # how deep each ranking goes before fusion


class SearchInputError(ValueError):
    """The mode's input is missing (no words, no photo); the message says what to give."""


@dataclass(frozen=True)
class RankedHit:
    product: ProductView
    score: float  # higher is better: the full-text rank (keyword), cosine (semantic, photo), fused RRF (hybrid)
    why: str  # one line for a person: the score and what it comes from
    snippet: str = ""  # keyword matches: description excerpt with the matched words marked
    ranks: dict[str, int] = field(default_factory=dict)  # hybrid: rank in each search it fused


@dataclass(frozen=True)
class CatalogueSearchResult:
    mode: str
    hits: list[RankedHit]
    took_ms: float  # the search itself: FTS query and/or vector search, without embedding the query
    embed_ms: float = 0.0  # turning the query into a vector (semantic, photo, hybrid)
    matched_any_term: bool = False

    def as_json(self) -> dict[str, object]:
        """{"mode", "hits": [{"id", "name", "category", "price", "score", "why"}], "took_ms"}: the CLI's and the API's contract."""
        hits = [
            {
                "id": hit.product.id,
                "name": hit.product.name,
                "category": hit.product.category,
                "price": float(hit.product.price),
                "score": round(hit.score, 4),
                "why": hit.why,
            }
            for hit in self.hits
        ]
        return {"mode": self.mode, "hits": hits, "took_ms": round(self.took_ms, 3)}


def search(
    engine: Engine,
    *,
    mode: str,
    query: str = "",
    photos: Sequence[Image.Image] = (),
    indexes: SearchIndexes | None = None,
    filters: ProductFilters = ProductFilters(),
    limit: int = 20,
) -> CatalogueSearchResult:
    """`search_catalogue` in a session of its own: what the pages and the CLI call."""
    with session_scope(engine) as session:
        return search_catalogue(session, mode=mode, query=query, photos=photos, indexes=indexes, filters=filters, limit=limit)


def search_catalogue(
    session: Session,
    *,
    mode: str,
    query: str = "",
    photos: Sequence[Image.Image] = (),
    indexes: SearchIndexes | None = None,
    filters: ProductFilters = ProductFilters(),
    limit: int = 20,
) -> CatalogueSearchResult:
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(SEARCH_MODES)}")
    if mode == "photo" and not photos:
        raise SearchInputError("photo search needs a photo")
    if mode != "photo" and not query_terms(query):
        raise SearchInputError("type some words to search for")
    if mode == "keyword":
        result = keyword_search(session, query, filters=filters, limit=limit)
        hits = [RankedHit(hit.product, hit.score, f"keyword score {hit.score:.2f}", hit.snippet) for hit in result.hits]
        return CatalogueSearchResult(mode, hits, result.took_ms, matched_any_term=result.matched_any_term)
    if indexes is None:
        raise ValueError(f"{mode} search needs the catalogue's vector indexes")

    embed_started = time.perf_counter()
    vector = indexes.photo_query(photos) if mode == "photo" else indexes.text_query(query)
    embed_ms = (time.perf_counter() - embed_started) * 1000
    started = time.perf_counter()
    index = indexes.photos if mode == "photo" else indexes.text
    depth = HYBRID_DEPTH if mode == "hybrid" else limit
    if isinstance(index, FilteredSearch):  # pgvector: the filters go into the search's own SQL query
        neighbours = index.filtered(filters).search(vector, k=depth)
    else:
        neighbours = index.search(vector, k=depth, allowed=filtered_product_ids(session, filters))
    if mode in ("semantic", "photo"):
        took_ms = (time.perf_counter() - started) * 1000
        products = {product.id: product for product in products_by_ids(session, [neighbour.key for neighbour in neighbours])}
        label = "meaning" if mode == "semantic" else "photo"
        hits = [RankedHit(products[n.key], n.score, f"{label} similarity {n.score:.3f}") for n in neighbours if n.key in products]
        return CatalogueSearchResult(mode, hits, took_ms, embed_ms)

    keyword = keyword_search(session, query, filters=filters, limit=HYBRID_DEPTH)
    keyword_ids = [hit.product.id for hit in keyword.hits]
    semantic_ids = [neighbour.key for neighbour in neighbours]
    fused = reciprocal_rank_fusion([keyword_ids, semantic_ids])[:limit]
    took_ms = (time.perf_counter() - started) * 1000
    keyword_rank = {product_id: rank for rank, product_id in enumerate(keyword_ids, start=1)}
    semantic_rank = {product_id: rank for rank, product_id in enumerate(semantic_ids, start=1)}
    cosine = {neighbour.key: neighbour.score for neighbour in neighbours}
    snippets = {hit.product.id: hit.snippet for hit in keyword.hits}
    products = {product.id: product for product in products_by_ids(session, [product_id for product_id, _ in fused])}
    hits = []
    for product_id, score in fused:
        ranks = {name: rank[product_id] for name, rank in (("keyword", keyword_rank), ("semantic", semantic_rank)) if product_id in rank}
        parts = [
            f"keyword #{ranks['keyword']}" if "keyword" in ranks else "no keyword match",
            f"meaning #{ranks['semantic']} ({cosine[product_id]:.3f})" if "semantic" in ranks else "not among the closest in meaning",
        ]
        hits.append(RankedHit(products[product_id], score, f"fused {score:.4f}: " + ", ".join(parts), snippets.get(product_id, ""), ranks))
    return CatalogueSearchResult(mode, hits, took_ms, embed_ms, keyword.matched_any_term)


def similar_products(
    session: Session, indexes: SearchIndexes, *, text: str = "", photos: Sequence[Image.Image] = (), k: int = 8
) -> list[RankedHit]:
    """The `k` catalogue items closest to a listing: by meaning and by photo, fused by rank when
    both are given."""
    rankings: list[list[str]] = []
    scores: dict[str, list[str]] = {}
    depth = k + 20  # each search goes deeper than k: fusion reorders them
    searches = []
    if query_terms(text):
        searches.append(("meaning", indexes.text.search(indexes.text_query(text), k=depth)))
    if photos:
        searches.append(("photo", indexes.photos.search(indexes.photo_query(photos), k=depth)))
    for label, neighbours in searches:
        for neighbour in neighbours:
            scores.setdefault(neighbour.key, []).append(f"{label} {neighbour.score:.3f}")
        rankings.append([neighbour.key for neighbour in neighbours])
    fused = reciprocal_rank_fusion(rankings)[:k]
    products = {product.id: product for product in products_by_ids(session, [key for key, _ in fused])}
    return [RankedHit(products[key], score, "similar by " + ", ".join(scores[key])) for key, score in fused if key in products]
