"""Exact vector search: top-k equals a brute-force ranking, keys with several vectors score as
their best one, filters restrict, edge cases answer empty; reciprocal rank fusion."""

from __future__ import annotations

import numpy as np
import pytest

from core.search.vector_index import ExactIndex, reciprocal_rank_fusion


def test_top_k_matches_a_brute_force_cosine_ranking() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 32)).astype(np.float32)
    query = rng.normal(size=32).astype(np.float32)
    keys = [f"p{row}" for row in range(500)]
    index = ExactIndex(keys, vectors)
    cosine = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    expected = [keys[row] for row in np.argsort(-cosine)[:10]]
    found = index.search(query, k=10)
    assert [neighbour.key for neighbour in found] == expected
    assert found[0].score == pytest.approx(float(cosine.max()), abs=1e-5)
    assert all(a.score >= b.score for a, b in zip(found, found[1:]))


def test_a_key_with_several_vectors_scores_as_its_best_and_appears_once() -> None:
    vectors = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], np.float32)
    index = ExactIndex(["sofa", "sofa", "table", "lamp"], vectors)
    found = index.search(np.array([0, 1], np.float32), k=5)
    assert [neighbour.key for neighbour in found] == ["sofa", "table", "lamp"]
    assert found[0].score == pytest.approx(1.0)


def test_allowed_keys_restrict_the_results() -> None:
    vectors = np.eye(4, dtype=np.float32)
    index = ExactIndex(["a", "b", "c", "d"], vectors)
    found = index.search(np.array([1, 0.5, 0, 0], np.float32), k=3, allowed={"b", "c"})
    assert [neighbour.key for neighbour in found] == ["b", "c"]
    assert index.search(np.array([1, 0, 0, 0], np.float32), k=3, allowed=set()) == []


def test_several_query_vectors_match_by_their_closest() -> None:
    index = ExactIndex(["x", "y"], np.array([[1, 0], [0, 1]], np.float32))
    found = index.search(np.array([[1, 0], [0, 1]], np.float32), k=2)
    assert {neighbour.key for neighbour in found} == {"x", "y"} and all(n.score == pytest.approx(1.0) for n in found)


def test_empty_index_and_zero_k_answer_nothing() -> None:
    assert ExactIndex([], np.empty((0, 8), np.float32)).search(np.ones(8, np.float32), k=5) == []
    assert ExactIndex(["a"], np.ones((1, 8), np.float32)).search(np.ones(8, np.float32), k=0) == []
    with pytest.raises(ValueError):
        ExactIndex(["a", "b"], np.ones((1, 8), np.float32))


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["d", "b", "c"]])
    keys = [key for key, _ in fused]
    assert keys[:2] == ["b", "c"]  # ranked by both beats first in one only
    assert set(keys[2:]) == {"a", "d"}
    assert fused[0][1] == pytest.approx(2 / 62)
