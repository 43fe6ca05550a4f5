"""Keyword search over product names and descriptions with each backend's own full-text index:
FTS5 with bm25 on SQLite, a weighted tsvector with ts_rank on PostgreSQL (db.postgres). Both rank
title words over description words, take any string as a query (every word is quoted, never read
as an operator), and fall back to any word but stop words when no product holds them all."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, column, func, literal, literal_column, select, table
from sqlalchemy.orm import Session, selectinload

from core.search.keyword_query import MATCH_END, MATCH_START, fallback_terms, fts_match_expression, query_terms
from db.postgres import SEARCH_CONFIG, fold_diacritics
from db.queries import ProductFilters, ProductView
from db.tables import Category, Product

# Title words say more about the item than the seller's prose.
NAME_WEIGHT = 4.0
DESCRIPTION_WEIGHT = 1.0
SNIPPET_WORDS = 12
# PostgreSQL ranks at most this many of a query's matches (the first the index yields): a query matching
# most of a million listings then costs about what one matching 2,000 does (benchmarks/bench_postgres.py).
RANKED_CANDIDATES = 2_000
BITMAP_WORK_MEM = "32MB"  # for the transaction of a PostgreSQL keyword search (see keyword_search)

_fts = table("products_fts", column("rowid"), column("name"), column("description"))
_fts_table: ColumnElement[Any] = literal_column("products_fts")
_search_vector: ColumnElement[Any] = literal_column("products.search_vector")
_top_category: ColumnElement[Any] = literal_column("products.top_category_id")
# ts_rank's weights run {D, C, B, A}: the description is B, the title A.
_TS_WEIGHTS = f"{{0, 0, {DESCRIPTION_WEIGHT / NAME_WEIGHT}, 1}}"
# Rank normalisation 1 divides by 1 + log(document length), as bm25 damps long descriptions.
_TS_LENGTH_NORMALISATION = 1
_HEADLINE_OPTIONS = f'StartSel="{MATCH_START}", StopSel="{MATCH_END}", MaxWords={SNIPPET_WORDS}, MinWords=4, ShortWord=1'


@dataclass(frozen=True)
class SearchHit:
    product: ProductView
    category: str
    score: float  # higher is better (negated bm25 on SQLite, ts_rank on PostgreSQL)
    snippet: str  # description excerpt, matched words between MATCH_START and MATCH_END


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    took_ms: float
    matched_any_term: bool  # no product held every word, so the search fell back to any word


def keyword_search(session: Session, query: str, *, filters: ProductFilters = ProductFilters(), limit: int = 20) -> SearchResult:
    """Products matching the query's words (all of them; else any but stop words), best first, with the filters."""
    started = time.perf_counter()
    terms = query_terms(query)
    postgres = session.get_bind().dialect.name == "postgresql"
    filters = filters.resolved(session)
    top_category_id = filters.top_level_id(session) if postgres else None
    if top_category_id is not None and filters.is_top_level:
        # The top level's own index holds exactly its products: a list of its subcategories beside it would
        # only tempt the planner into a bitmap of the whole category (db.postgres).
        filters = replace(filters, category=None, category_ids=None)
    if postgres:
        # A filter's bitmap of a large catalogue goes lossy in the default 4 MB, and every row of every page
        # it touches is then read again: 16,000 rows instead of 1,800 at a million listings (p95 0.96 s -> 0.11 s).
        session.execute(select(func.set_config("work_mem", BITMAP_WORK_MEM, True)))
    hits: list[SearchHit] = []
    matched_any = False
    for any_term in (False, True):
        if not terms:
            break
        if postgres:
            statement = _postgres_statement(query, any_term=any_term, filters=filters, limit=limit, top_category_id=top_category_id)
        else:
            statement = _sqlite_statement(query, any_term=any_term, filters=filters, limit=limit)
        rows = session.execute(statement.options(selectinload(Product.images), selectinload(Product.category))).all()
        hits = [SearchHit(ProductView.of(product), path, float(score), snippet or "") for product, path, score, snippet in rows]
        if hits or len(terms) < 2:
            matched_any = any_term
            break
    return SearchResult(hits, (time.perf_counter() - started) * 1000, matched_any)


def _sqlite_statement(query: str, *, any_term: bool, filters: ProductFilters, limit: int) -> Select[Any]:
    expression = fts_match_expression(query, any_term=any_term)
    rank = func.bm25(_fts_table, NAME_WEIGHT, DESCRIPTION_WEIGHT)  # lower is better
    snippet = func.snippet(_fts_table, 1, MATCH_START, MATCH_END, "…", SNIPPET_WORDS)
    statement = (
        select(Product, Category.path, -rank, snippet)
        .join(_fts, _fts.c.rowid == Product.pk)
        .join(Product.category)
        .where(_fts_table.op("MATCH")(expression))
    )
    return filters.apply(statement).order_by(rank, Product.pk).limit(limit)


def _postgres_statement(
    query: str, *, any_term: bool, filters: ProductFilters, limit: int, top_category_id: int | None = None
) -> Select[Any]:
    terms = query_terms(query)
    terms = fallback_terms(terms) if any_term else terms
    # The words are letters and digits only (query_terms), each quoted as one term: nothing is an operator.
    expression = (" | " if any_term else " & ").join(f"'{fold_diacritics(term)}'" for term in terms)
    config: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")
    ts_query = func.to_tsquery(config, literal(expression))
    # Ranked on narrow rows (key and search vector) first, at most RANKED_CANDIDATES of them; the whole
    # rows, and ts_headline (which reads the whole description), only for the `limit` best.
    matches = filters.apply(select(Product.pk, _search_vector.label("search_vector")).where(_search_vector.op("@@")(ts_query)))
    if top_category_id is not None:  # a literal: the planner then reads the category's own index (db.postgres)
        matches = matches.where(_top_category == literal_column(str(int(top_category_id))))
    candidates = matches.limit(RANKED_CANDIDATES).subquery("candidates")
    rank = func.ts_rank(literal_column(f"'{_TS_WEIGHTS}'::float4[]"), candidates.c.search_vector, ts_query, _TS_LENGTH_NORMALISATION)
    ranked = select(candidates.c.pk, rank.label("rank")).order_by(rank.desc(), candidates.c.pk).limit(limit).subquery("ranked")
    snippet = func.ts_headline(config, Product.description, ts_query, _HEADLINE_OPTIONS)
    return (
        select(Product, Category.path, ranked.c.rank, snippet)
        .join(ranked, ranked.c.pk == Product.pk)
        .join(Product.category)
        .order_by(ranked.c.rank.desc(), Product.pk)
    )
