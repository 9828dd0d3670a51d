"""The baselines of the transfer test (the paper's Table 2), on the same trials as the models.

- ``genres``: the same Encoder CNN trained from scratch on the genre labels
  (softmax head, cross-entropy on random crops; a song's prediction is the mean
  of its segments' class probabilities) -- the paper's "genres (baseline)". It
  trains a CNN per trial, so it runs in the first ``cnn_trials`` (3) trials only;
  the authors do not say how many trials they ran for it;
- ``random``: the encoder with random weights (one draw per trial), with the same
  linear probe as the models;
- ``mfcc``: mean and std over time of MFCCs, computed here as the type-II DCT of
  the stored log-mel (``log10(1 + 10 mel)``, not dB) over the mel axis;
- ``logmel``: mean and std over time of the 128 log-mel bands.

The encoder baselines standardise their input with the scalar mean and std of
the trial's training songs' frames. :func:`run_baselines` runs any of them;
:func:`musicrep.evaluation.transfer.transfer` calls it after the models.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy.fft import dct
from torch import nn
from torch.nn import functional as F

from .. import progress
from ..config import setting
from ..data.store import FeatureStore
from ..errors import ConfigError
from ..training.model import Encoder, split_segments
from .probe import (
    ProbeConfig,
    ProbeResult,
    TrialPlan,
    probe_trial,
    probe_trials,
    score_trial,
    summarise,
)

log = logging.getLogger(__name__)

BASELINES: tuple[str, ...] = ("genres", "random", "mfcc", "logmel")
DISPLAY: dict[str, str] = {
    "genres": "genres (baseline)",
    "random": "random encoder",
    "mfcc": "MFCC mean/std",
    "logmel": "log-mel mean/std",
}


@dataclasses.dataclass(frozen=True)
class BaselineConfig(ProbeConfig):
    """Settings of the baselines, on top of the probe's (``random``, ``mfcc`` and
    ``logmel`` are probed like the models).

    ``cnn_trials``: the genre CNN runs in the first 3 trials only (our choice: it
    trains a CNN per trial); ``cnn_steps``, ``cnn_batch_size``, ``cnn_lr`` (Adam) and
    ``cnn_eval_every`` (steps between validation checks) train it; ``n_mfcc``
    coefficients for ``mfcc``; ``baseline_width`` of the encoder baselines (0: the
    models' width, or 256 without models).
    """

    cnn_trials: int = setting(3, min=1)
    n_mfcc: int = setting(20, min=1)
    cnn_steps: int = setting(1500, min=1)
    cnn_batch_size: int = setting(32, min=1)
    cnn_lr: float = setting(1e-3, min=0.0, min_exclusive=True)
    cnn_eval_every: int = setting(100, min=1)
    baseline_width: int = setting(0, min=0)  # 0: the models' width (or 256)


def check_names(names: Iterable[str], *, valid: Sequence[str], what: str) -> list[str]:
    """``names`` as a list, each one of ``valid`` (else a ConfigError naming the first ``what`` that is not)."""
    names = list(names)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(f"unknown {what} {unknown[0]!r}; choose from {list(valid)}")
    return names


def check_baselines(names: Iterable[str]) -> list[str]:
    """``names`` as a list, each one of :data:`BASELINES` (else a ConfigError)."""
    return check_names(names, valid=BASELINES, what="baseline")


def run_baselines(
    names: Iterable[str], *, store: FeatureStore, plan: TrialPlan, config: BaselineConfig = BaselineConfig(), width: int,
    embed: Callable[[nn.Module], np.ndarray],
) -> dict[str, ProbeResult]:
    """The baselines ``names`` (any of :data:`BASELINES`, in the order given) on the trials of ``plan``.

    Parameters
    ----------
    store : FeatureStore of the collection
    width : the encoder baselines' width
    embed : song embeddings float [len(plan.track_ids), D] of an in-memory Encoder
        (:func:`musicrep.evaluation.song_vectors.song_embeddings` on ``store``)
    """
    names = check_baselines(names)
    moments = _frame_moments(store, plan.track_ids) if {"random", "genres"} & set(names) else None
    methods: dict[str, ProbeResult] = {}
    for name in names:
        if name in ("mfcc", "logmel"):
            methods[name] = summary_baseline(name, store=store, plan=plan, config=config)
        elif name == "random":
            methods[name] = random_encoder_baseline(store=store, plan=plan, config=config, width=width,
                                                    moments=moments, embed=embed)
        elif name == "genres":
            methods[name] = genre_cnn_baseline(store=store, plan=plan, config=config, width=width, moments=moments)
    return methods


# --------------------------------------------------------------------------- summary features


def summary_features(frames: np.ndarray, *, kind: str, n_mfcc: int = 20) -> np.ndarray:
    """Mean and std over time of MFCCs or log-mel bands.

    Parameters
    ----------
    frames : float [T, n_mels] log-mel as stored
    kind : "mfcc" (type-II orthonormal DCT over the mel axis, first ``n_mfcc``
        coefficients) or "logmel"

    Returns
    -------
    np.ndarray [shape=(2 * n_features,)]
    """
    x = np.asarray(frames, dtype=np.float64)
    if kind == "mfcc":
        x = dct(x, type=2, norm="ortho", axis=1)[:, :n_mfcc]
    elif kind != "logmel":
        raise ConfigError(f"summary feature kind {kind!r} is not 'mfcc' or 'logmel'")
    return np.concatenate([x.mean(axis=0), x.std(axis=0)]).astype(np.float32)


def summary_baseline(kind: str, *, store: FeatureStore, plan: TrialPlan, config: BaselineConfig = BaselineConfig()) -> ProbeResult:
    """``mfcc`` or ``logmel``: :func:`summary_features` of every song, probed in every trial."""
    feats = np.stack([summary_features(store.frames(t), kind=kind, n_mfcc=config.n_mfcc) for t in plan.track_ids])
    return probe_trials(kind, features=feats, plan=plan, config=config)


# --------------------------------------------------------------------------- encoder baselines


def _frame_moments(store: FeatureStore, track_ids: Sequence[str]) -> np.ndarray:
    """Per track: number of values, their sum and sum of squares, float64 [n, 3]."""
    out = np.zeros((len(track_ids), 3), dtype=np.float64)
    for i, t in enumerate(track_ids):
        x = store.frames(t).astype(np.float64)
        out[i] = (x.size, x.sum(), np.square(x).sum())
    return out


def _scalar_stats(moments: np.ndarray) -> tuple[float, float]:
    """Scalar mean and std of the frames summarised by rows of :func:`_frame_moments`."""
    n, s, s2 = moments.sum(axis=0)
    mean = s / max(n, 1.0)
    std = float(np.sqrt(max(s2 / max(n, 1.0) - mean * mean, 0.0)))
    return float(mean), max(std, 1e-6)


def random_encoder_baseline(
    *,
    store: FeatureStore, plan: TrialPlan, config: ProbeConfig = ProbeConfig(), width: int, moments: np.ndarray,
    embed: Callable[[nn.Module], np.ndarray],
) -> ProbeResult:
    """One randomly initialised encoder per trial (seeded by the trial), the same probe.

    ``moments``: :func:`_frame_moments` float64 [len(plan.track_ids), 3]; ``embed``
    as in :func:`run_baselines`.
    """
    k = len(plan.classes)
    results = []
    for trial in plan.trials:
        torch.manual_seed(trial.seed)
        enc = Encoder(width=width, n_mels=store.feature_config.n_mels).eval()
        enc.set_normalization(*_scalar_stats(moments[trial.index["train"]]))
        results.append(probe_trial(features=embed(enc), trial=trial, n_classes=k, config=config))
    res = summarise(method="random", results=results, classes=plan.classes)
    log.info("transfer random: %.3f +- %.3f over %d trials", res.accuracy_mean, res.accuracy_std, res.n_trials)
    return res


class _GenreCNN(nn.Module):
    def __init__(self, width: int, n_mels: int, n_classes: int):
        super().__init__()
        self.encoder = Encoder(width=width, n_mels=n_mels)
        self.head = nn.Linear(self.encoder.embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@torch.no_grad()
def _song_probabilities(net: _GenreCNN, store: FeatureStore, track_ids: Sequence[str]) -> np.ndarray:
    net.eval()
    seg = store.feature_config.segment_frames
    out = []
    for t in track_ids:
        segments = torch.from_numpy(np.ascontiguousarray(split_segments(store.frames(t), segment_frames=seg), dtype=np.float32))
        out.append(F.softmax(net(segments), dim=1).mean(0).numpy())
    net.train()
    return np.stack(out)


def _genre_cnn_trial(
    *,
    store: FeatureStore, ids: Mapping[str, Sequence[str]], y: Mapping[str, np.ndarray], n_classes: int,
    width: int, config: BaselineConfig, seed: int, stats: tuple[float, float],
) -> tuple[np.ndarray, dict]:
    """Train one genre CNN (seeded by ``seed``); predictions int [n_test] and what was kept."""
    seg = store.feature_config.segment_frames
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _GenreCNN(width, store.feature_config.n_mels, n_classes)
    net.encoder.set_normalization(float(stats[0]), float(max(stats[1], 1e-6)))
    opt = torch.optim.Adam(net.parameters(), lr=config.cnn_lr)
    best = (-1.0, 0, copy.deepcopy(net.state_dict()))
    train_ids, y_train = list(ids["train"]), np.asarray(y["train"], dtype=np.int64)
    net.train()
    for step in progress.bar(range(1, config.cnn_steps + 1), desc=f"genre CNN seed {seed}", leave=False):
        pick = rng.integers(0, len(train_ids), size=config.cnn_batch_size)
        batch = np.stack([store.crop(train_ids[i], rng=rng, length=seg) for i in pick]).astype(np.float32)
        opt.zero_grad()
        loss = F.cross_entropy(net(torch.from_numpy(batch)), torch.from_numpy(y_train[pick]))
        loss.backward()
        opt.step()
        if step % config.cnn_eval_every == 0 or step == config.cnn_steps:
            vacc = float((_song_probabilities(net, store, ids["valid"]).argmax(1) == y["valid"]).mean())
            if vacc > best[0]:
                best = (vacc, step, copy.deepcopy(net.state_dict()))
    net.load_state_dict(best[2])
    pred = _song_probabilities(net, store, ids["test"]).argmax(1)
    return pred, {"seed": seed, "step": best[1], "valid_accuracy": best[0], "width": width}


def genre_cnn_baseline(
    *,
    store: FeatureStore, plan: TrialPlan, config: BaselineConfig = BaselineConfig(), width: int, moments: np.ndarray
) -> ProbeResult:
    """The genre CNN in the first ``config.cnn_trials`` trials (it trains a network per trial).

    ``moments``: :func:`_frame_moments` float64 [len(plan.track_ids), 3].
    """
    k = len(plan.classes)
    results = []
    for trial in plan.trials[: config.cnn_trials]:
        ids = {part: [plan.track_ids[i] for i in rows] for part, rows in trial.index.items()}
        pred, info = _genre_cnn_trial(store=store, ids=ids, y=trial.y, n_classes=k, width=width, config=config,
                                      seed=trial.seed, stats=_scalar_stats(moments[trial.index["train"]]))
        results.append(score_trial(pred=pred, y_test=trial.y["test"], n_classes=k, info={**info, "split_seed": trial.split_seed}))
        log.info("genre CNN trial %d: test accuracy %.3f (step %d)", trial.seed, results[-1][0], info["step"])
    return summarise(method="genres", results=results, classes=plan.classes)
