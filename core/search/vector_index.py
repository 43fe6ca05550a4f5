"""Nearest-neighbour search over embeddings, behind an interface a larger index can implement.

`ExactIndex` keeps L2-normalised vectors in memory and answers with one matrix product: exact
cosine similarity, fast enough for catalogues of this size (see the README's benchmark figures).
pgvector's HNSW index in PostgreSQL (db.vectors.StoredVectorIndex) implements the same `VectorIndex` protocol.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

RRF_K = 60  # reciprocal rank fusion's usual constant: damps the weight of the very first ranks


@dataclass(frozen=True)
class Neighbour:
    key: str  # the item the vector belongs to (a product id)
    score: float  # cosine similarity, higher is closer


class VectorIndex(Protocol):
    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def search(self, query: np.ndarray, *, k: int, allowed: Collection[str] | None = None) -> list[Neighbour]:
        """The `k` closest keys to `query` (best first), only among `allowed` keys when given."""
        ...


@runtime_checkable
class FilteredSearch(Protocol):
    """An index that applies the catalogue's filters itself (in the database's query) rather than take
    the `allowed` keys: `filtered(filters)` is the index restricted to what the filters let through."""

    def filtered(self, filters: Any) -> VectorIndex: ...


def normalise_rows(vectors: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """Rows scaled to unit length; `in_place` reuses a float32 array's memory (a catalogue's photo
    features are 55 MB: a copy at start-up is a copy too many)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    if in_place and vectors.flags.writeable:
        vectors /= norms
        return vectors
    return vectors / norms


class ExactIndex:
    """Exact cosine search. Several vectors may share a key (a product's photos): a key scores
    as its best vector, and appears once in the results."""

    def __init__(self, keys: Sequence[str], vectors: np.ndarray, *, take_ownership: bool = False) -> None:
        """`take_ownership`: the caller hands `vectors` over, so they are normalised in place."""
        if len(keys) != len(vectors):
            raise ValueError("one key per vector")
        self.keys = np.asarray(list(keys), dtype=object)
        self.vectors = (
            normalise_rows(vectors, in_place=take_ownership)
            if len(keys)
            else np.empty((0, vectors.shape[-1] if vectors.ndim == 2 else 0), np.float32)
        )
        self.dim = int(self.vectors.shape[1])
        unique_keys, codes = np.unique(self.keys.astype(str), return_inverse=True)
        # Grouping costs a scatter per query: only done when some key has several vectors.
        self._grouped = len(unique_keys) < len(self.keys)
        self._result_keys = unique_keys if self._grouped else self.keys.astype(str)
        self._key_codes = codes

    def __len__(self) -> int:
        return len(self.keys)

    def search(self, query: np.ndarray, *, k: int, allowed: Collection[str] | None = None) -> list[Neighbour]:
        query = normalise_rows(np.asarray(query, dtype=np.float32).reshape(-1, self.dim))
        if len(self.keys) == 0 or k <= 0:
            return []
        # Several query vectors (e.g. two photos of one item): a catalogue vector scores as its best match.
        scores = (self.vectors @ query.T).max(axis=1)
        if self._grouped:
            best_per_key = np.full(len(self._result_keys), -np.inf, np.float32)
            np.maximum.at(best_per_key, self._key_codes, scores)
        else:
            best_per_key = scores.copy()
        if allowed is not None:
            best_per_key[~np.isin(self._result_keys, np.asarray(list(allowed), dtype=str))] = -np.inf
        candidates = int(np.isfinite(best_per_key).sum())
        take = min(k, candidates)
        if take == 0:
            return []
        top = np.argpartition(-best_per_key, take - 1)[:take]
        top = top[np.argsort(-best_per_key[top], kind="stable")]
        return [Neighbour(str(self._result_keys[row]), float(best_per_key[row])) for row in top]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], *, k: int = RRF_K) -> list[tuple[str, float]]:
    """Keys of several best-first rankings fused by sum(1 / (k + rank)), best first.

    Scores of different searches (bm25, cosine) are not comparable; their ranks are.
    """
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
