"""Keyword search over product names and descriptions with each backend's own full-text index:
FTS5 with bm25 on SQLite, a weighted tsvector with ts_rank on PostgreSQL (db.postgres). Both rank
title words over description words, take any string as a query (every word is quoted, never read
as an operator), and fall back to any word when no product holds them all."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, column, func, literal, literal_column, select, table
from sqlalchemy.orm import Session, selectinload

from core.search.keyword_query import MATCH_END, MATCH_START, fts_match_expression, query_terms
from db.postgres import SEARCH_CONFIG, fold_diacritics
from db.queries import ProductFilters, ProductView
from db.tables import Category, Product

# Title words say more about the item than the seller's prose.
NAME_WEIGHT = 4.0
DESCRIPTION_WEIGHT = 1.0
SNIPPET_WORDS = 12

_fts = table("products_fts", column("rowid"), column("name"), column("description"))
_fts_table: ColumnElement[Any] = literal_column("products_fts")
_search_vector: ColumnElement[Any] = literal_column("products.search_vector")
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
    """Products matching the query's words (all of them; else any), best first, with the filters."""
    started = time.perf_counter()
    terms = query_terms(query)
    dialect = session.get_bind().dialect.name
    hits: list[SearchHit] = []
    matched_any = False
    for any_term in (False, True):
        if not terms:
            break
        statement = _postgres_statement(terms, any_term) if dialect == "postgresql" else _sqlite_statement(query, any_term)
        statement = filters.apply(statement).options(selectinload(Product.images), selectinload(Product.category))
        rows = session.execute(statement.limit(limit)).all()
        hits = [SearchHit(ProductView.of(product), path, float(score), snippet or "") for product, path, score, snippet in rows]
        if hits or len(terms) < 2:
            matched_any = any_term
            break
    return SearchResult(hits, (time.perf_counter() - started) * 1000, matched_any)


def _sqlite_statement(query: str, any_term: bool) -> Select[Any]:
    expression = fts_match_expression(query, any_term=any_term)
    rank = func.bm25(_fts_table, NAME_WEIGHT, DESCRIPTION_WEIGHT)  # lower is better
    snippet = func.snippet(_fts_table, 1, MATCH_START, MATCH_END, "…", SNIPPET_WORDS)
    return (
        select(Product, Category.path, -rank, snippet)
        .join(_fts, _fts.c.rowid == Product.pk)
        .join(Product.category)
        .where(_fts_table.op("MATCH")(expression))
        .order_by(rank, Product.pk)
    )


def _postgres_statement(terms: list[str], any_term: bool) -> Select[Any]:
    # The words are letters and digits only (query_terms), each quoted as one term: nothing is an operator.
    expression = (" | " if any_term else " & ").join(f"'{fold_diacritics(term)}'" for term in terms)
    config: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")
    ts_query = func.to_tsquery(config, literal(expression))
    rank = func.ts_rank(literal_column(f"'{_TS_WEIGHTS}'::float4[]"), _search_vector, ts_query, _TS_LENGTH_NORMALISATION)
    # ts_headline reads the whole description: computed for the rows returned only, as the outer select's column.
    snippet = func.ts_headline(config, Product.description, ts_query, _HEADLINE_OPTIONS)
    return (
        select(Product, Category.path, rank, snippet)
        .join(Product.category)
        .where(_search_vector.op("@@")(ts_query))
        .order_by(rank.desc(), Product.pk)
    )
