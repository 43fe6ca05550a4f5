"""Keyword search over product names and descriptions with each backend's own full-text index:
FTS5 with bm25 on SQLite, a weighted tsvector with ts_rank on PostgreSQL (db.postgres). Both rank
title words over description words, take any string as a query (every word is quoted, never read
as an operator), and fall back to any word but stop words when no product holds them all.

SQLite's bm25 ranks every match of that fallback, rare words weighing most. PostgreSQL ranks at most
RANKED_CANDIDATES matches, so at a million listings the any-word matches of "baby clothes 6 months" (100,000,
most holding only "6" or "months") were the first 2,000 the index yielded, few of them baby clothes, and their
bitmap alone took 16 ms. Its fallback therefore drops the commonest words first (the server's statistics of the
search vector say which): products holding all but the commonest word, then fewer, down to the rarest word
alone; then each other word alone to fill what is left, rarest first. Each step is a selective all-words query."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Integer, Select, any_, bindparam, column, func, literal, literal_column, select, table, text
from sqlalchemy.orm import Session, selectinload

from core.search.keyword_query import MATCH_END, MATCH_START, fallback_terms, fts_match_expression, query_terms
from db.postgres import SEARCH_CONFIG, fold_diacritics
from db.queries import ProductFilters, ProductView
from db.tables import Category, Product

# Title words say more about the item than the seller's prose.
NAME_WEIGHT = 4.0
DESCRIPTION_WEIGHT = 1.0
SNIPPET_WORDS = 12
# ts_headline parses all of the text it is given (0.18 ms a thousand characters, for each hit of a page):
# PostgreSQL's snippets come from this much of a description, the whole of 96% of the shared catalogue's.
SNIPPET_SOURCE_CHARACTERS = 1_000
# PostgreSQL ranks at most this many of a query's matches (the first the index yields): a query matching
# most of a million listings then costs about what one matching 2,000 does (benchmarks/bench_postgres.py).
RANKED_CANDIDATES = 2_000
# The fallback's broadest steps (each word alone) rank fewer: a single word's many matches, whose first 2,000
# are no better chosen than their first 250, and a filter the index does not hold (a price range) has the server
# read ten rows for each it keeps ("chair" in Home & Garden under £100 at a million listings: 10,600 rows read
# for 1,100 kept, 23 ms, to fill 2,000 candidates).
FILL_CANDIDATES = 250
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
    top_category_id = None
    if postgres:
        # One statement: the category's top level (its own index holds exactly its products: a list of its
        # subcategories beside it would only tempt the planner into a bitmap of the whole category, db.postgres),
        # a deeper category's subtree, and more memory for bitmaps: a filter's bitmap of a large catalogue goes
        # lossy in the default 4 MB, and every row of every page it touches is then read again (16,000 rows
        # instead of 1,800 at a million listings, p95 0.96 s -> 0.11 s).
        top_id, subtree = filters.top_level_columns()
        row = session.execute(select(top_id, subtree, func.set_config("work_mem", BITMAP_WORK_MEM, True))).one()
        within = filters.by_top_level(row.top_id, row.subtree)
        if within is None:
            return SearchResult([], (time.perf_counter() - started) * 1000, False)
        filters, top_category_id = within
    else:
        filters = filters.resolved(session)
    if not terms:
        return SearchResult([], (time.perf_counter() - started) * 1000, False)
    if postgres:
        statement = _postgres_statement(query, filters=filters, limit=limit, top_category_id=top_category_id)
    else:
        statement = _sqlite_statement(query, any_term=False, filters=filters, limit=limit)
    hits = _hits(session, statement)
    if not hits and len(terms) > 1:
        if postgres:
            hits = _postgres_fallback(session, terms, filters=filters, limit=limit, top_category_id=top_category_id)
        else:
            hits = _hits(session, _sqlite_statement(query, any_term=True, filters=filters, limit=limit))
        return SearchResult(hits, (time.perf_counter() - started) * 1000, bool(hits))
    return SearchResult(hits, (time.perf_counter() - started) * 1000, False)


def _hits(session: Session, statement: Select[Any]) -> list[SearchHit]:
    rows = session.execute(statement.options(selectinload(Product.images), selectinload(Product.category))).all()
    return [SearchHit(ProductView.of(product), path, float(score), snippet or "") for product, path, score, snippet in rows]


def term_frequencies(session: Session, terms: Sequence[str]) -> dict[str, float]:
    """PostgreSQL: the share of products whose search vector holds each term, from the server's statistics
    (its most common thousand lexemes); 0 for a rarer term, or for every term before the table is analysed."""
    folded = [fold_diacritics(term) for term in terms]
    # One statement: the statistics' thousand lexemes stay on the server, each term's share is looked up there.
    shares = session.execute(
        text(
            f"""WITH common AS (
                SELECT element, share FROM pg_stats, unnest(most_common_elems::text::text[], most_common_elem_freqs) AS s(element, share)
                WHERE schemaname = current_schema() AND tablename = 'products' AND attname = 'search_vector')
            SELECT term, coalesce(min(coalesce(common.share, 0)), 0)
            FROM unnest(CAST(:terms AS text[])) AS term
            LEFT JOIN LATERAL unnest(tsvector_to_array(to_tsvector('{SEARCH_CONFIG}'::regconfig, term))) AS lexeme ON true
            LEFT JOIN common ON common.element = lexeme
            GROUP BY term"""
        ),
        {"terms": folded},
    ).all()
    by_folded = {term: float(share) for term, share in shares}
    return {term: by_folded.get(folded_term, 0.0) for term, folded_term in zip(terms, folded)}


def _postgres_fallback(
    session: Session, terms: list[str], *, filters: ProductFilters, limit: int, top_category_id: int | None
) -> list[SearchHit]:
    """No product holds every word: those holding the most of the rarest words first (see the module's note).
    Each step ranks keys only; the rows and snippets are read once, for the hits kept."""
    wanted = fallback_terms(terms)
    frequency = term_frequencies(session, wanted)
    by_rarity = sorted(wanted, key=lambda term: frequency[term])  # stable: as typed among equals
    # The rarest words together, the commonest dropped first (all of the words but stop words is a query not
    # yet tried when the query had stop words); then each word alone, rarest first, which is any word with the
    # rarer words' matches ahead (a word no product holds, or one rarer than the statistics list, counts as rarest).
    longest = len(by_rarity) if len(by_rarity) < len(terms) else len(by_rarity) - 1
    steps = [(by_rarity[:count], RANKED_CANDIDATES) for count in range(longest, 1, -1)]
    steps += [([term], FILL_CANDIDATES) for term in by_rarity]
    ranks: dict[int, float] = {}
    for required, candidates in steps:
        ranked = _ranked_matches(
            wanted, required=required, filters=filters, limit=limit, candidates=candidates, top_category_id=top_category_id
        )
        for pk, score in session.execute(ranked).all():
            ranks.setdefault(pk, float(score))
        if len(ranks) >= limit:
            break
    kept = {pk: ranks[pk] for pk in list(ranks)[:limit]}
    if not kept:
        return []
    # The rows in the steps' order, each with the rank its step gave it; the keys as one array, so the statement's
    # text is the same whatever they are (the driver and the server then reuse its parse and plan).
    keys = bindparam("keys", list(kept), type_=ARRAY(Integer))
    snippet = _snippet(_ts_query(wanted, operator="|"))
    statement = select(Product, Category.path, snippet).join(Product.category).where(Product.pk == any_(keys))
    rows = session.execute(
        statement.order_by(func.array_position(keys, Product.pk)).options(selectinload(Product.images), selectinload(Product.category))
    ).all()
    return [SearchHit(ProductView.of(product), path, kept[product.pk], snippet or "") for product, path, snippet in rows]


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


def _ts_query(terms: Sequence[str], *, operator: str) -> ColumnElement[Any]:
    # The words are letters and digits only (query_terms), each quoted as one term: nothing is an operator.
    expression = f" {operator} ".join(f"'{fold_diacritics(term)}'" for term in terms)
    return func.to_tsquery(literal_column(f"'{SEARCH_CONFIG}'::regconfig"), literal(expression))


def _snippet(ts_query: ColumnElement[Any]) -> ColumnElement[Any]:
    config: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")
    return func.ts_headline(config, func.left(Product.description, SNIPPET_SOURCE_CHARACTERS), ts_query, _HEADLINE_OPTIONS)


def _ranked_matches(
    terms: Sequence[str], *, required: Sequence[str], filters: ProductFilters, limit: int, candidates: int, top_category_id: int | None
) -> Select[Any]:
    """(key, rank) of the best `limit` products whose search vector holds every `required` word, ranked by any
    of `terms` (all of them when they are the required ones); ranked on narrow rows (key and search vector), at
    most `candidates` of them, the first the index yields."""
    match_query = _ts_query(required, operator="&")
    rank_query = match_query if list(required) == list(terms) else _ts_query(terms, operator="|")
    # Stop words are in most listings: the index finds the rows holding the other words, and the stop words are
    # checked on those rows (ts_match_vq is @@, in a form no index serves). Reading their posting lists in the
    # index took 8 ms of "something to sit on in the garden" at a million listings, the rest 1 ms.
    content = fallback_terms(list(required))
    matched: ColumnElement[Any]
    if len(content) < len(required):
        matched = _search_vector.op("@@")(_ts_query(content, operator="&")) & func.ts_match_vq(_search_vector, match_query)
    else:
        matched = _search_vector.op("@@")(match_query)
    # Within a top level, its own full-text index, the price checked on the rows it yields: the planner would
    # rather AND the (top level, price) index's bitmap with the whole catalogue's full-text one, and a common word
    # matches ten times as many there ("controllers" in Home & Garden: 52,000 against 800, 10 ms against 0.2 ms).
    matches = filters.apply(select(Product.pk, _search_vector.label("search_vector")).where(matched), price_index=top_category_id is None)
    if top_category_id is not None:  # a literal: the planner then reads the category's own index (db.postgres)
        matches = matches.where(_top_category == literal_column(str(int(top_category_id))))
    found = matches.limit(candidates).subquery("candidates")
    rank = func.ts_rank(literal_column(f"'{_TS_WEIGHTS}'::float4[]"), found.c.search_vector, rank_query, _TS_LENGTH_NORMALISATION)
    return select(found.c.pk, rank.label("rank")).order_by(rank.desc(), found.c.pk).limit(limit)


def _postgres_statement(query: str, *, filters: ProductFilters, limit: int, top_category_id: int | None = None) -> Select[Any]:
    """The best matches of all the query's words with their rows, category path, rank and snippet: the whole
    rows, and ts_headline (which parses the description), only for the `limit` best."""
    terms = query_terms(query)
    ranked = _ranked_matches(
        terms, required=terms, filters=filters, limit=limit, candidates=RANKED_CANDIDATES, top_category_id=top_category_id
    ).subquery("ranked")
    return (
        select(Product, Category.path, ranked.c.rank, _snippet(_ts_query(terms, operator="&")))
        .join(ranked, ranked.c.pk == Product.pk)
        .join(Product.category)
        .order_by(ranked.c.rank.desc(), Product.pk)
    )
