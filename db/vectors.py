"""Embeddings kept in the catalogue when it is PostgreSQL, so that every instance shares them.

One row per (vector space, item): a space is an encoder's output (product texts, or one backbone's
photo features). Where the server has pgvector the column is a `vector`, each space has its own
HNSW index (cosine), and a search runs in SQL with the catalogue filters in the same query
(`StoredVectorIndex`). Without the extension the column is `real[]` and the vectors are read into
the in-memory exact index (core.search.vector_index.ExactIndex), as on SQLite.

Photo features are stored centred on the space's centre (the mean of the first photos written,
kept in `vector_spaces`): centring spreads cosines that would otherwise crowd near 1, and a fixed
centre keeps rows written at different times comparable.

pgvector (0.6) filters the rows a graph walk found after the walk, so a search for one category would
find few of its rows in the walk over the whole space. Each row therefore carries its product's
top-level category (`top_category_id`, kept in step by triggers whatever changes a label), and each
space has, beside its HNSW graph, a partial IVFFlat index per top-level category: a search filtered
to a category scans the lists of that category's index nearest the query. IVFFlat rather than a graph
per category: at a million listings a query far from a category's rows (a phone searched among
appliances) found 0.91 of its true 10 in that category's graph even at pgvector's most candidates,
and 0.97 in an eighth of its lists; it builds in seconds where the graphs took minutes. Its
lists are fixed when it is built, so it is built again once its category has grown fourfold. The
category indexes order by inner product (the stored vectors are unit length, so the order is the
cosine order): the space's cosine graph cannot serve that order, so the planner takes the category's."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from pgvector.sqlalchemy import VECTOR
from sqlalchemy import (
    REAL,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    func,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert

from core.search.vector_index import Neighbour, normalise_rows
from db.postgres import has_column, has_trigger
from db.queries import ProductFilters
from db.tables import Category, Product

VECTORS_TABLE = "catalogue_vectors"
_SPACE_NAME = re.compile(r"[A-Za-z0-9_.:+-]{1,200}")
# Candidates a graph walk keeps: at 100, some queries far from a 100k catalogue found none of their true 10.
HNSW_EF_SEARCH = 400
HNSW_EF_SEARCH_MAX = 1000  # pgvector's ceiling
# A walk the filters cut (a price range, a list of allowed products; no category) keeps pgvector's most.
HNSW_EF_SEARCH_FILTERED = HNSW_EF_SEARCH_MAX
# Graph links per node, and candidates while building (pgvector's default is 64).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
# A category index has this many lists per square root of its rows (FAISS's guide: 4 to 16): finer lists hold a
# query's neighbours in fewer rows. Scanning a tenth of the lists found 0.986 of the true 10 with 4 per root
# against 0.941 with 1 (the shared catalogue's real text vectors, 100 queries); at a million listings, Appliances
# 0.997 at a twentieth of 4 per root against 0.937 at an eighth of 1 per root, in half the time.
IVF_LISTS_PER_ROOT = 4
# The k-means of a build holds a float per sample and list (pgvector samples 50 rows per list): the lists of a
# very large category are cut to build within this much memory (maintenance_work_mem is raised to it for the build).
IVF_BUILD_MEMORY = 1 << 30
# A category search scans this share of its index's lists (recall@10 0.997 at a twentieth at a million listings,
# on the benchmark's clustered copies; real listings' neighbours lie further apart, hence the margin) ...
IVF_PROBED_SHARE = 1 / 10
# ... and this share when other filters also cut the category (a price range, a subcategory, a location): the
# nearest rows they let through lie further out, in lists a smaller share misses (Home & Garden under £100 at a
# million listings: 0.990 at a twentieth and 0.997 at a sixteenth and a tenth in an experiment, 1.000 at an eighth
# in the benchmark).
IVF_PROBED_SHARE_NARROWED = 1 / 8
# ... and at least this many rows (all of a smaller category's): lists of real listings, unlike the benchmark's
# clustered copies, do not hold a far query's neighbours together (recall@10 0.54 on the shared catalogue's
# appliances at an eighth of 1 list per root, 1.00 read whole); 13 ms a search for 7,000 rows at 100,000 listings.
IVF_MIN_SCANNED_ROWS = 10_000
IVF_REBUILD_GROWTH = 4  # a category index is built again once its category holds this many times its rows
ROWS_PER_HIT = 3  # rows a search reads for each product it returns: a product's photos share its place
WRITE_BATCH = 500
_metadata = MetaData()
spaces = Table("vector_spaces", _metadata, Column("space", String(200), primary_key=True), Column("centre", ARRAY(REAL)))


@cache  # built once, not on every search that builds its statement from it
def _vectors_table(*, pgvector: bool) -> Table:
    return Table(
        VECTORS_TABLE,
        MetaData(),
        Column("space", String(200), primary_key=True),
        Column("item_id", String(64), primary_key=True),
        Column("product_id", String(64), nullable=False),
        Column("source_hash", String(64), nullable=False),  # the text's or photo's hash the vector was computed from
        Column("embedding", VECTOR() if pgvector else ARRAY(REAL), nullable=False),
        Column("top_category_id", Integer),  # set by a trigger: the product's top-level category
    )


# A vector row's top-level category follows its product's label: set on write, updated on relabel.
_TOP_CATEGORY_FUNCTIONS = (
    # marketplace_top_category_of comes with the search schema (db.postgres), made first.
    """CREATE OR REPLACE FUNCTION marketplace_top_category(product varchar) RETURNS integer LANGUAGE sql STABLE AS $$
        SELECT marketplace_top_category_of(category_id) FROM products WHERE id = product $$""",
    """CREATE OR REPLACE FUNCTION marketplace_vector_top_category() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.top_category_id := marketplace_top_category(NEW.product_id); RETURN NEW; END $$""",
    # Only rows whose top level changes: a vector row updated is inserted again into its space's graphs.
    f"""CREATE OR REPLACE FUNCTION marketplace_relabel_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE top_level integer := marketplace_top_category(NEW.id);
        BEGIN UPDATE {VECTORS_TABLE} SET top_category_id = top_level
            WHERE product_id = NEW.id AND top_category_id IS DISTINCT FROM top_level;
        RETURN NULL; END $$""",
)
_TOP_CATEGORY_TRIGGERS = {
    (VECTORS_TABLE, "marketplace_vector_top_category"): f"""CREATE TRIGGER marketplace_vector_top_category
        BEFORE INSERT OR UPDATE OF product_id ON {VECTORS_TABLE} FOR EACH ROW EXECUTE FUNCTION marketplace_vector_top_category()""",
    ("products", "marketplace_relabel_vectors"): """CREATE TRIGGER marketplace_relabel_vectors
        AFTER UPDATE OF category_id ON products FOR EACH ROW WHEN (OLD.category_id IS DISTINCT FROM NEW.category_id)
        EXECUTE FUNCTION marketplace_relabel_vectors()""",
}


def create_vector_schema(connection: Connection) -> None:
    """The vector tables, with pgvector where the server has the extension (installed here when it can be).
    A catalogue made before rows carried their top-level category gains the column, filled in place."""
    try:
        with connection.begin_nested():
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except Exception:  # noqa: BLE001 - no extension, or no right to install it: the real[] fallback
        pass
    has_vector = connection.scalar(text("SELECT count(*) FROM pg_type WHERE typname = 'vector'")) > 0
    column = "vector" if has_vector else "real[]"
    connection.execute(
        text(
            f"""CREATE TABLE IF NOT EXISTS {VECTORS_TABLE} (
            space varchar(200) NOT NULL, item_id varchar(64) NOT NULL,
            product_id varchar(64) NOT NULL REFERENCES products(id) ON DELETE CASCADE,
            source_hash varchar(64) NOT NULL, embedding {column} NOT NULL, top_category_id integer,
            PRIMARY KEY (space, item_id))"""
        )
    )
    connection.execute(text(f"CREATE INDEX IF NOT EXISTS ix_{VECTORS_TABLE}_product ON {VECTORS_TABLE} (product_id)"))
    spaces.create(connection, checkfirst=True)
    for statement in _TOP_CATEGORY_FUNCTIONS:
        connection.execute(text(statement))
    if not has_column(connection, VECTORS_TABLE, "top_category_id"):
        connection.execute(text(f"ALTER TABLE {VECTORS_TABLE} ADD COLUMN top_category_id integer"))
        connection.execute(text(f"UPDATE {VECTORS_TABLE} SET top_category_id = marketplace_top_category(product_id)"))
    for (table, trigger), statement in _TOP_CATEGORY_TRIGGERS.items():
        if not has_trigger(connection, table, trigger):
            connection.execute(text(statement))


def uses_pgvector(engine: Engine) -> bool:
    """Whether the catalogue's vectors are pgvector columns (searched in SQL) or real[] (searched in memory)."""
    with engine.connect() as connection:
        kind = connection.scalar(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = CAST(:table AS regclass) AND attname = 'embedding'"
            ),
            {"table": VECTORS_TABLE},
        )
    return kind == "vector"


def _checked_space(space: str) -> str:
    if not _SPACE_NAME.fullmatch(space):
        raise ValueError(f"not a vector space name: {space!r}")
    return space


def _hnsw_index_name(space: str, top_category_id: int | None = None) -> str:
    part = space if top_category_id is None else f"{space}/{top_category_id}"
    return f"ix_{VECTORS_TABLE}_hnsw_{hashlib.sha1(part.encode()).hexdigest()[:10]}"


def category_index_name(space: str, top_category_id: int) -> str:
    # md5, which the server has too: a search finds the index's lists by this name in SQL (search_plan).
    return f"ix_{VECTORS_TABLE}_ivf_{hashlib.md5(f'{space}/{top_category_id}'.encode()).hexdigest()[:10]}"


def _sha1_category_index_name(space: str, top_category_id: int) -> str:
    """What category_index_name was before searches looked the index up in SQL (the server has no sha1)."""
    return f"ix_{VECTORS_TABLE}_ivf_{hashlib.sha1(f'{space}/{top_category_id}'.encode()).hexdigest()[:10]}"


def ivf_build_memory(lists: int, dim: int, rows: int) -> int:
    """Bytes pgvector (0.6) asks of maintenance_work_mem to build an IVFFlat index of `lists` lists over `rows`
    `dim`-d vectors: room for its samples (50 a list, 10,000 at least), the centres, and a float per sample taken
    and list (k-means' bounds) that outgrows the rest."""
    samples, vector = max(50 * lists, 10_000), 8 + 4 * dim
    taken = min(samples, max(rows, 1))
    return samples * vector + 3 * lists * vector + 4 * (taken * lists + lists * lists + 2 * taken + 4 * lists)


def ivf_lists_for(rows: int, dim: int) -> int:
    """Lists for a category index of `rows` vectors of `dim` dimensions: IVF_LISTS_PER_ROOT per square root of
    the rows (pgvector advises rows / 1000 up to a million: few long lists), fewer where the build would need
    more than IVF_BUILD_MEMORY."""
    lists = max(1, min(rows, IVF_LISTS_PER_ROOT * math.isqrt(max(rows, 0))))  # no more lists than rows
    while lists > 1 and ivf_build_memory(lists, dim, rows) > IVF_BUILD_MEMORY:
        lists = lists * 9 // 10
    return lists


def ivf_probes_for(lists: int, *, rows: float, narrowed: bool = False) -> int:
    """Lists to scan of an index of `lists` lists over `rows` rows: IVF_PROBED_SHARE of them
    (IVF_PROBED_SHARE_NARROWED when other filters cut the category too), but IVF_MIN_SCANNED_ROWS rows at
    least, so a category of up to that many rows is read whole."""
    share = IVF_PROBED_SHARE_NARROWED if narrowed else IVF_PROBED_SHARE
    return min(lists, max(1, math.ceil(lists * share), math.ceil(IVF_MIN_SCANNED_ROWS * lists / max(rows, 1))))


def ivf_probes_expression(lists: ColumnElement[Any], rows: ColumnElement[Any], *, narrowed: bool = False) -> ColumnElement[Any]:
    """ivf_probes_for as SQL, for a search to set its probes in the statement that reads the index's lists and rows."""
    share = literal(IVF_PROBED_SHARE_NARROWED if narrowed else IVF_PROBED_SHARE, Float)
    at_least = func.ceil(literal(float(IVF_MIN_SCANNED_ROWS), Float) * lists / func.greatest(rows, 1))
    return cast(func.least(lists, func.greatest(1, func.ceil(lists * share), at_least)), Integer)


def index_lists(connection: Connection, index_name: str) -> int | None:
    """The lists an IVFFlat index was built with; None when there is no such index."""
    options = connection.scalar(text("SELECT reloptions FROM pg_class WHERE relname = :name AND relkind = 'i'"), {"name": index_name})
    if options is None:
        return None
    return next((int(option.split("=", 1)[1]) for option in options if option.startswith("lists=")), None)


def ensure_vector_indexes(engine: Engine, space: str, dim: int) -> None:
    """The space's HNSW graph (cosine distance) over all its rows, made once, and an IVFFlat index (inner
    product) per top-level category holding vectors, made or built again when its category has grown
    IVF_REBUILD_GROWTH-fold since (with the maintenance_work_mem its build asks for, ivf_build_memory, where the
    server allows less). A catalogue from before the category indexes loses its per-category graphs; a category
    index named as before searches looked it up in SQL is renamed."""
    space = _checked_space(space)
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:space))"), {"space": space})
        connection.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {_hnsw_index_name(space)} ON {VECTORS_TABLE} "
                f"USING hnsw ((embedding::vector({int(dim)})) vector_cosine_ops) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE space = '{space}'"
            )
        )
        top_level_ids = connection.scalars(select(Category.id).where(Category.depth == 0)).all()
        for top_category_id in top_level_ids:  # the per-category graphs of an older catalogue, its index names
            connection.execute(text(f"DROP INDEX IF EXISTS {_hnsw_index_name(space, top_category_id)}"))
            name = category_index_name(space, top_category_id)
            if index_lists(connection, name) is None:
                connection.execute(text(f"ALTER INDEX IF EXISTS {_sha1_category_index_name(space, top_category_id)} RENAME TO {name}"))
        table = _vectors_table(pgvector=True)
        counts = connection.execute(
            select(table.c.top_category_id, func.count())
            .where(table.c.space == space, table.c.top_category_id.is_not(None))
            .group_by(table.c.top_category_id)
        ).all()
        allowed_kb = int(connection.scalar(text("SELECT setting FROM pg_settings WHERE name = 'maintenance_work_mem'")))
        for top_category_id, rows in counts:
            name, wanted = category_index_name(space, top_category_id), ivf_lists_for(rows, dim)
            built = index_lists(connection, name)
            if built is not None and wanted < built * math.isqrt(IVF_REBUILD_GROWTH):
                continue
            connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
            needed_kb = ivf_build_memory(wanted, dim, rows) // 1024 + 1
            if needed_kb > allowed_kb:  # the server's default (64 MB) refuses a large category's build
                connection.execute(select(func.set_config("maintenance_work_mem", f"{needed_kb}kB", True)))
                allowed_kb = needed_kb
            connection.execute(
                text(
                    f"CREATE INDEX {name} ON {VECTORS_TABLE} USING ivfflat ((embedding::vector({int(dim)})) vector_ip_ops) "
                    f"WITH (lists = {wanted}) WHERE space = '{space}' AND top_category_id = {int(top_category_id)}"
                )
            )


def stored_hashes(engine: Engine, space: str) -> dict[str, str]:
    """item id -> the hash of what its stored vector was computed from."""
    table = _vectors_table(pgvector=False)
    with engine.connect() as connection:
        rows = connection.execute(select(table.c.item_id, table.c.source_hash).where(table.c.space == space))
        return {item_id: source_hash for item_id, source_hash in rows}


def space_centre(engine: Engine, space: str, *, proposed: np.ndarray | None = None) -> np.ndarray | None:
    """The space's centre; `proposed` becomes it when it has none yet (the first writer's wins)."""
    with engine.begin() as connection:
        if proposed is not None:
            values = [float(value) for value in proposed]
            connection.execute(insert(spaces).values(space=space, centre=values).on_conflict_do_nothing())
        centre = connection.scalar(select(spaces.c.centre).where(spaces.c.space == space))
    return None if centre is None else np.asarray(centre, np.float32)


def write_vectors(
    engine: Engine, space: str, *, item_ids: Sequence[str], product_ids: Sequence[str], hashes: Sequence[str], vectors: np.ndarray
) -> None:
    """Insert or replace the items' vectors, in batches of their own transactions (a long job keeps what it has done)."""
    table = _vectors_table(pgvector=uses_pgvector(engine))
    for start in range(0, len(item_ids), WRITE_BATCH):
        rows = [
            {"space": space, "item_id": item, "product_id": product, "source_hash": digest, "embedding": vector.tolist()}
            for item, product, digest, vector in zip(
                item_ids[start : start + WRITE_BATCH],
                product_ids[start : start + WRITE_BATCH],
                hashes[start : start + WRITE_BATCH],
                vectors[start : start + WRITE_BATCH],
            )
        ]
        statement = insert(table)
        update = {
            "product_id": statement.excluded.product_id,
            "source_hash": statement.excluded.source_hash,
            "embedding": statement.excluded.embedding,
        }
        with engine.begin() as connection:
            connection.execute(statement.on_conflict_do_update(index_elements=["space", "item_id"], set_=update), rows)


def delete_vectors(engine: Engine, space: str, item_ids: Collection[str]) -> None:
    table = _vectors_table(pgvector=False)
    with engine.begin() as connection:
        connection.execute(table.delete().where(table.c.space == space, table.c.item_id.in_(list(item_ids))))


def read_vectors(engine: Engine, space: str, *, dim: int) -> tuple[list[str], np.ndarray]:
    """(product id per row, vectors): a space's rows for the in-memory index."""
    table = _vectors_table(pgvector=uses_pgvector(engine))
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.product_id, table.c.embedding).where(table.c.space == space).order_by(table.c.item_id)
        ).all()
    if not rows:
        return [], np.empty((0, dim), np.float32)
    return [row[0] for row in rows], np.asarray([row[1] for row in rows], np.float32)


@dataclass(frozen=True)
class StoredVectorIndex:
    """core.search.vector_index.VectorIndex over a space's pgvector rows: cosine search through its HNSW
    index, filters in the same SQL query. Several vectors may share a product (its photos): a product
    scores as its best vector and appears once. pgvector (0.6) filters an index's candidates after the
    index scan: a category filter scans the category's own index (see the module's note); when the other
    filters leave fewer than `k` of the scan's rows, the search is exact over the rows the filters let
    through (few, when they cut the scan's candidates that much)."""

    engine: Engine
    space: str
    dim: int
    filters: ProductFilters = ProductFilters()
    ef_search: int = HNSW_EF_SEARCH

    def __len__(self) -> int:
        table = _vectors_table(pgvector=True)
        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(table).where(table.c.space == self.space)) or 0)

    def filtered(self, filters: ProductFilters) -> StoredVectorIndex:
        return StoredVectorIndex(self.engine, self.space, self.dim, filters, self.ef_search)

    def search(self, query: np.ndarray, *, k: int, allowed: Collection[str] | None = None) -> list[Neighbour]:
        if k <= 0:
            return []
        restricted = not self.filters.is_empty or allowed is not None
        ef_search = min(max(self.ef_search, HNSW_EF_SEARCH_FILTERED if restricted else 0, ROWS_PER_HIT * k), HNSW_EF_SEARCH_MAX)
        best: dict[str, float] = {}
        with self.engine.begin() as connection:  # planned once for all of the query's vectors
            plan = search_plan(
                connection, self.space, self.filters, narrowed=self.filters.narrows_top_level or allowed is not None, ef_search=ef_search
            )
            if plan.matches_nothing:
                return []
            for vector in normalise_rows(np.asarray(query, np.float32).reshape(-1, self.dim)):
                for product_id, score in self._nearest(connection, vector, k=k, plan=plan, allowed=allowed, restricted=restricted):
                    best[product_id] = max(score, best.get(product_id, -np.inf))
        ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]
        return [Neighbour(key, score) for key, score in ranked]

    def _nearest(
        self, connection: Connection, vector: np.ndarray, *, k: int, plan: SearchPlan, allowed: Collection[str] | None, restricted: bool
    ) -> list[tuple[str, float]]:
        """A vector's nearest rows under the plan's filters: through its top level's IVFFlat index when it has
        one, else through the space's graph; `restricted`: the filters or `allowed` keep part of the space."""
        table = _vectors_table(pgvector=True)
        embedding = cast(table.c.embedding, VECTOR(self.dim))
        rows_wanted = ROWS_PER_HIT * k
        # The space as a literal: the planner then matches the space's partial indexes in every plan.
        where_space = table.c.space == literal_column(f"'{_checked_space(self.space)}'")
        # The category's IVFFlat index orders by inner product (pgvector's <#> is its negative): the cosine
        # for these unit vectors, in an order the space's cosine graph cannot serve.
        by_category = plan.lists is not None
        distance = embedding.max_inner_product(vector.tolist()) if by_category else embedding.cosine_distance(vector.tolist())
        statement = select(table.c.product_id, distance).where(where_space)
        if allowed is not None:
            statement = statement.where(table.c.product_id.in_(list(allowed)))
        if not plan.filters.is_empty:
            statement = plan.filters.apply(statement.join(Product, Product.id == table.c.product_id))
        if plan.top_category_id is not None:  # a literal again: the planner matches the category's own index
            statement = statement.where(table.c.top_category_id == literal_column(str(int(plan.top_category_id))))
        rows = connection.execute(statement.order_by(distance).limit(rows_wanted)).all()
        if restricted and len({row[0] for row in rows}) < k:
            # The filters let too few of the index's candidates through (they keep a small part of the
            # catalogue, or one far from the query): exact over the rows they let through. "+ 0" keeps
            # the planner off the vector indexes, so it starts from the filtered rows instead.
            rows = connection.execute(statement.order_by(distance + 0).limit(rows_wanted)).all()
        seen: dict[str, float] = {}
        for product_id, value in rows:
            seen.setdefault(product_id, -float(value) if by_category else 1.0 - float(value))
        return list(seen.items())


_pg_class = Table(
    "pg_class",
    MetaData(),
    Column("relname", String),
    Column("relkind", String),
    Column("reloptions", ARRAY(Text)),
    Column("reltuples", Float),
)


@dataclass(frozen=True)
class SearchPlan:
    """What a stored vector search filters on, looked up in one statement (search_plan)."""

    filters: ProductFilters  # a deeper category's subtree looked up; a top level's left to top_category_id
    top_category_id: int | None  # the category's top level: its rows carry it, and its index holds them
    lists: int | None  # that top level's IVFFlat index's lists; None: no such index (the space's graph serves)
    probes: int | None  # the lists the search scans (ivf_probes_for)
    matches_nothing: bool = False  # an unknown category


def search_plan(connection: Connection, space: str, filters: ProductFilters, *, narrowed: bool, ef_search: int) -> SearchPlan:
    """A search's filters and indexes in one statement (each statement is a round trip, a millisecond on a busy
    server): the category's top level, the lists of that top level's index, a deeper category's subtree, and,
    set for the transaction, the IVFFlat probes (ivf_probes_for; the server computes them from the index's lists
    and rows) and the graph's `ef_search`."""
    top_id, subtree = filters.top_level_columns()
    top = select(top_id, subtree).subquery("top_level")
    # category_index_name, in SQL
    digest = func.md5(literal(f"{_checked_space(space)}/") + cast(top.c.top_id, Text))
    options = func.array_to_string(_pg_class.c.reloptions, ",")
    index = (
        select(cast(func.substring(options, r"lists=(\d+)"), Integer).label("lists"), _pg_class.c.reltuples.label("rows"))
        .where(_pg_class.c.relkind == "i", _pg_class.c.relname == literal(f"ix_{VECTORS_TABLE}_ivf_") + func.left(digest, 10))
        .lateral("category_index")
    )
    found = (
        select(top.c.top_id, top.c.subtree, index.c.lists, index.c.rows).select_from(top.outerjoin(index, literal(True))).subquery("found")
    )
    probes = ivf_probes_expression(found.c.lists, found.c.rows, narrowed=narrowed)
    row = connection.execute(
        select(
            found.c.top_id,
            found.c.subtree,
            found.c.lists,
            probes.label("probes"),
            func.set_config("ivfflat.probes", cast(func.coalesce(probes, 1), Text), True),
            func.set_config("hnsw.ef_search", str(ef_search), True),
        )
    ).one()
    within = filters.by_top_level(row.top_id, row.subtree)
    if within is None:
        return SearchPlan(filters, None, None, None, matches_nothing=True)
    planned, top_category_id = within
    if top_category_id is None:
        return SearchPlan(planned, None, None, None)
    return SearchPlan(planned, top_category_id, row.lists, row.probes)
