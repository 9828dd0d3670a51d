"""Tagging metrics, per tag and macro over tags: ROC-AUC and PR-AUC (average precision).

As the tagging literature reports them (``sklearn.metrics.roc_auc_score`` and
``average_precision_score`` with ``average="macro"``): ROC-AUC with tied scores
counting one half; PR-AUC as average precision, songs with equal scores passing
the threshold together. A tag without both a positive and a negative song has no
AUC and is left out of the macro mean. (Retrieval's AP in
:mod:`musicrep.evaluation.ranking` differs on purpose: it takes the expectation over
orders of tied songs.)
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..errors import EvaluationError


def roc_auc(y_true: np.ndarray, *, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(a positive outscores a negative), ties counting one half.

    Parameters
    ----------
    y_true : int/bool [n], both classes present
    scores : float [n]
    """
    pos = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        raise EvaluationError(f"ROC-AUC needs positives and negatives; got {n_pos} and {n_neg}")
    ranks = stats.rankdata(np.asarray(scores, dtype=np.float64))  # tied scores share their mean rank
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_true: np.ndarray, *, scores: np.ndarray) -> float:
    """PR-AUC as average precision: sum over distinct scores of precision x recall gained.

    Songs with equal scores pass the threshold together (one point of the curve),
    so a constant score gets the prevalence. Parameters as :func:`roc_auc`.
    """
    y = np.asarray(y_true).astype(np.float64)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = y.sum()
    if not n_pos:
        raise EvaluationError("PR-AUC needs at least one positive")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last song above each distinct threshold
    tp = np.cumsum(y)[last]
    precision, recall = tp / (last + 1), tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def scored_tags(y_true: np.ndarray) -> np.ndarray:
    """bool [T]: the tags of ``y_true`` int/bool [n, T] with both a positive and a negative song."""
    n_pos = np.asarray(y_true).astype(bool).sum(axis=0)
    return (n_pos > 0) & (n_pos < len(y_true))


def macro_scores(y_true: np.ndarray, *, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-tag ROC-AUC and PR-AUC, NaN for tags without both classes.

    Parameters
    ----------
    y_true : int/bool [n, T]
    scores : float [n, T]

    Returns
    -------
    roc : float64 [T], pr : float64 [T], scored : bool [T] (tags with both classes);
    the macro averages are ``roc[scored].mean()`` and ``pr[scored].mean()``
    """
    y, s = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 2:
        raise EvaluationError(f"labels {y.shape} and scores {s.shape} must be the same [songs, tags] shape")
    if not np.isfinite(s).all():
        raise EvaluationError("scores hold NaN or infinity; the probe diverged (try a smaller probe_lr)")
    scored = scored_tags(y)
    roc, pr = np.full(y.shape[1], np.nan), np.full(y.shape[1], np.nan)
    for j in np.flatnonzero(scored):
        roc[j], pr[j] = roc_auc(y[:, j], scores=s[:, j]), average_precision(y[:, j], scores=s[:, j])
    return roc, pr, scored
