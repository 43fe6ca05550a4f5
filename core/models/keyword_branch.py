"""Keyword evidence for the combined model: TF-IDF of word 1-2-grams + a linear SVM, as 13 scores.

The TF-IDF baseline reads rare words (brands, model numbers) better than the sentence encoder,
so its scores become the combined model's third branch. Training items get cross-fitted scores
(from models that never saw them), as stacking requires. The scorer is stored as plain arrays
and a vocabulary, so checkpoints stay loadable with `weights_only=True`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, partial

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from core.data.splits import cross_fit, stratified_folds

NGRAM_RANGE = (1, 2)


def _vectorizer(vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(ngram_range=NGRAM_RANGE, sublinear_tf=True, min_df=1 if vocabulary else 2, vocabulary=vocabulary)


@dataclass
class KeywordScorer:
    vocabulary: dict[str, int]
    idf: np.ndarray
    coef: np.ndarray  # (n_classes, n_terms)
    intercept: np.ndarray

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], *, c: float = 0.5) -> KeywordScorer:
        vectorizer = _vectorizer()
        features = vectorizer.fit_transform(texts)
        svm = LinearSVC(C=c).fit(features, labels)
        if svm.coef_.shape[0] == 1:  # two classes: sklearn keeps one row
            coef = np.vstack([-svm.coef_[0], svm.coef_[0]])
            intercept = np.array([-svm.intercept_[0], svm.intercept_[0]])
        else:
            coef, intercept = svm.coef_, svm.intercept_
        vocabulary = {term: int(index) for term, index in vectorizer.vocabulary_.items()}
        return cls(vocabulary, vectorizer.idf_.astype(np.float32), coef.astype(np.float32), intercept.astype(np.float32))

    @cached_property
    def _fitted_vectorizer(self) -> TfidfVectorizer:
        # Built once: setting idf_ validates the whole vocabulary (7 ms for the shipped one).
        vectorizer = _vectorizer(self.vocabulary)
        vectorizer.idf_ = self.idf
        return vectorizer

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._fitted_vectorizer.transform(texts) @ self.coef.T + self.intercept, dtype=np.float32)

    def to_state(self) -> dict[str, object]:
        return {
            "vocabulary": self.vocabulary,
            "idf": torch.from_numpy(self.idf),
            "coef": torch.from_numpy(self.coef).half(),
            "intercept": torch.from_numpy(self.intercept),
        }

    @classmethod
    def from_state(cls, state: dict[str, object]) -> KeywordScorer:
        vocabulary, idf, coef, intercept = (state[key] for key in ("vocabulary", "idf", "coef", "intercept"))
        if not isinstance(vocabulary, dict) or not (
            isinstance(idf, torch.Tensor) and isinstance(coef, torch.Tensor) and isinstance(intercept, torch.Tensor)
        ):
            raise ValueError("not a keyword scorer's state")
        return cls(dict(vocabulary), idf.float().numpy(), coef.float().numpy(), intercept.float().numpy())


def cross_fitted_scores(texts: Sequence[str], labels: Sequence[int], *, folds: int = 5, seed: int = 42) -> np.ndarray:
    """Each text scored by a scorer fitted on the other folds."""
    text_array, y = np.asarray(texts, dtype=object), np.asarray(labels)
    n_classes = int(y.max()) + 1
    fit_and_score = partial(_fit_and_score, text_array, y, n_classes=n_classes)
    return cross_fit(fit_and_score, stratified_folds(y, folds=folds, seed=seed), n_rows=len(text_array), width=n_classes)


def stacked_scores(
    texts: Sequence[str], labels: Sequence[int] | np.ndarray, fit_rows: np.ndarray, *, n_classes: int, seed: int = 42
) -> tuple[KeywordScorer, np.ndarray]:
    """(N, n_classes) keyword scores for stacking: the rows in `fit_rows` cross-fitted (from scorers
    that never saw them), every other row from the scorer fitted on all of `fit_rows`, which is returned."""
    text_array, y = np.asarray(texts, dtype=object), np.asarray(labels)
    scorer = KeywordScorer.fit(list(text_array[fit_rows]), y[fit_rows])
    fit_and_score = partial(_fit_and_score, text_array, y, n_classes=n_classes)
    scores = cross_fit(fit_and_score, stratified_folds(y, rows=fit_rows, seed=seed), n_rows=len(text_array), width=n_classes)
    others = np.setdiff1d(np.arange(len(text_array)), fit_rows)
    if len(others):
        scores[others] = _widened(scorer.scores(list(text_array[others])), np.unique(y[fit_rows]), n_classes)
    return scorer, scores


def _fit_and_score(
    texts: np.ndarray, labels: np.ndarray, _fold: int, fit_rows: np.ndarray, score_rows: np.ndarray, *, n_classes: int
) -> np.ndarray:
    scorer = KeywordScorer.fit(list(texts[fit_rows]), labels[fit_rows])
    return _widened(scorer.scores(list(texts[score_rows])), np.unique(labels[fit_rows]), n_classes)


def _widened(scores: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """A scorer's columns (the classes it was fitted on) placed among all `n_classes`; absent classes score 0."""
    if scores.shape[1] == n_classes:
        return scores
    widened = np.zeros((len(scores), n_classes), np.float32)
    widened[:, present] = scores if scores.shape[1] == len(present) else scores[:, present]
    return widened
