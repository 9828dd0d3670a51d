"""Ranking metrics of one embedding space: every song a query against the others.

Songs are ranked by cosine similarity of L2-normalised embeddings; a candidate is
relevant when it has the query's label. **AP** is average precision over the full
ranking, **P@k** the fraction of relevant songs among the first ``k`` (divided by
``k`` even when a label has fewer than ``k`` other songs). **Ties** (similarities
within ``atol``): every order of tied songs is taken as equally likely and the
metric is its expectation (McSherry & Najork 2008), so a constant embedding scores
exactly chance. :mod:`musicrep.evaluation.retrieval` runs these on held-out songs.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ..errors import ConfigError, EvaluationError
from .retrieval_settings import K

#: ranked similarities less than this apart tie (as in :func:`musicrep.evaluation.holdout.trial_scores`)
ATOL = 1e-6


# --------------------------------------------------------------------------- one ranking


def _expected_ranking(scores: np.ndarray, relevant: np.ndarray, *, atol: float) -> tuple[np.ndarray, np.ndarray]:
    """Per rank position: the chance that it holds a relevant song, and the expected
    number of relevant songs up to it given that it does, over random orders of ties.

    Returns
    -------
    rate : float [n], (relevant in the tie group) / (group size) at each position
    hits : float [n], E[relevant songs in positions 1..p | position p relevant]
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 1:
        raise ConfigError(f"scores {scores.shape} and relevant {relevant.shape} must be two 1-D arrays of one length")
    order = np.argsort(-scores, kind="stable")
    s, rel = scores[order], relevant[order].astype(np.float64)
    new = np.ones(len(s), dtype=bool)
    new[1:] = (s[:-1] - s[1:]) > atol
    group = np.cumsum(new) - 1
    size = np.bincount(group).astype(np.float64)             # t: songs in each tie group
    n_rel = np.bincount(group, weights=rel)                   # r: relevant songs in it
    before = np.cumsum(n_rel) - n_rel                         # relevant songs ranked above it
    slot = np.arange(len(s)) - np.flatnonzero(new)[group]     # 0-based place inside the group
    t, r = size[group], n_rel[group]
    # given a relevant song in this slot, the others of the group's r - 1 are spread
    # uniformly over its t - 1 other slots: slot * (r - 1) / (t - 1) of them lie above
    hits = before[group] + 1 + slot * (r - 1) / np.maximum(t - 1, 1)
    return r / t, hits


def average_precision(scores: np.ndarray, *, relevant: np.ndarray, atol: float = ATOL) -> float:
    """Average precision of one ranking, expected over random orders of tied scores.

    Parameters
    ----------
    scores : float [n], similarity of each candidate to the query (higher first)
    relevant : bool [n], whether each candidate is relevant
    atol : scores closer than this are tied

    Returns
    -------
    float in [0, 1]: mean over the relevant candidates of the precision at their
    rank; NaN when no candidate is relevant (the query cannot be scored)
    """
    return _ap_and_precision(scores, relevant, k=1, atol=atol)[0]


def precision_at_k(scores: np.ndarray, *, relevant: np.ndarray, k: int = K, atol: float = ATOL) -> float:
    """Fraction of relevant candidates among the first ``k``, expected over random orders of ties.

    Parameters
    ----------
    scores, relevant, atol : as in :func:`average_precision`
    k : the cut-off; the count is divided by ``k`` even when fewer than ``k``
        candidates exist or are relevant

    Returns
    -------
    float in [0, 1]
    """
    if k < 1:
        raise ConfigError(f"k={k} must be >= 1")
    return _ap_and_precision(scores, relevant, k=k, atol=atol)[1]


def _ap_and_precision(scores: np.ndarray, relevant: np.ndarray, *, k: int, atol: float) -> tuple[float, float]:
    """``(AP, P@k)`` from one sort (a pool of 20,000 songs sorts 20,000 times per space)."""
    rate, hits = _expected_ranking(scores, relevant, atol=atol)
    n_relevant = float(np.count_nonzero(relevant))
    ap = float(np.sum(rate * hits / np.arange(1, len(rate) + 1)) / n_relevant) if n_relevant else float("nan")
    return ap, float(rate[:k].sum() / k)


# --------------------------------------------------------------------------- a pool of songs


@dataclasses.dataclass(frozen=True)
class QueryScores:
    """Per-query AP and P@k of one embedding space on one pool.

    Attributes
    ----------
    queries : int [q], the pool rows that were queries (their label has another song)
    ap, p_at_k : float [q]
    n_relevant : int [q], other pool songs with the query's label
    n_skipped : pool songs that could not be queries (no other song with their label)
    k : the cut-off of ``p_at_k``
    """
    queries: np.ndarray
    ap: np.ndarray
    p_at_k: np.ndarray
    n_relevant: np.ndarray
    n_skipped: int
    k: int


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` float [n, D] scaled to unit L2 norm (a zero row stays zero), float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"embeddings must be [songs, dims], got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise EvaluationError(f"song {bad} has a NaN or infinite embedding; its model is damaged or diverged")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval(embeddings: np.ndarray, *, labels: Sequence[str], k: int = K, atol: float = ATOL,
              chunk: int = 512) -> QueryScores:
    """Every song as a query against the others: cosine ranking, AP and P@k.

    Parameters
    ----------
    embeddings : float [n, D], one row per song (normalised here)
    labels : [n], each song's label; songs with the query's label are relevant
    k : the cut-off of precision@k
    atol : similarities closer than this are tied (see :func:`average_precision`)
    chunk : queries whose similarities are computed at once (memory: chunk x n)

    Returns
    -------
    QueryScores
    """
    if k < 1:
        raise ConfigError(f"k={k} must be >= 1")
    x = unit_rows(embeddings)
    labels = np.asarray([str(v) for v in labels])
    if len(labels) != len(x):
        raise ConfigError(f"{len(labels)} labels for {len(x)} embeddings")
    _names, code = np.unique(labels, return_inverse=True)
    n_other = np.bincount(code, minlength=len(_names))[code] - 1
    queries = np.flatnonzero(n_other > 0)
    ap, pk = np.zeros(len(queries)), np.zeros(len(queries))
    for lo in range(0, len(queries), chunk):
        rows = queries[lo : lo + chunk]
        sims = x[rows] @ x.T  # [chunk, n]
        for j, i in enumerate(rows):
            s, rel = np.delete(sims[j], i), np.delete(code == code[i], i)
            ap[lo + j], pk[lo + j] = _ap_and_precision(s, rel, k=k, atol=atol)
    return QueryScores(queries=queries, ap=ap, p_at_k=pk, n_relevant=n_other[queries],
                       n_skipped=int(len(x) - len(queries)), k=k)
