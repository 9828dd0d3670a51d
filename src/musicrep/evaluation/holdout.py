"""Hold-out positive/negative prediction: the paper's Table 1, scored on the trials of
:mod:`musicrep.evaluation.trials`.

For each concept (artist, album, track) a *trial* is an anchor crop from a test
song, one positive and N negatives (Lee, Park & Nam 2019, section 4):

- artist / album: the positive is a crop of a **valid**-set song with the anchor's
  label; the negatives are crops of N distinct **test**-set songs with other labels;
- track: the positive is another, non-overlapping crop of the anchor song; the
  negatives are crops of N other test-set songs.

A trial is correct when the positive has the highest cosine similarity to the
anchor (ties are broken uniformly at random, counted as their expectation, so a
constant model scores exactly chance, 1 / (N + 1)).

Trials depend only on the split, the store's track lengths and the seed, never on a
model, so every model of a comparison is scored on the very same crops. The artist
concept uses the artist split, the album concept the album split, and the track
concept uses the track split (the artist split plus the songs without an artist),
as in training; a run saved before the track split existed falls back to its
artist split.

Honest intervals: 1,000 trials drawn from 12 test songs are not 1,000
independent observations. The interval reported is a bootstrap over the anchor
*songs* (songs resampled with replacement, each bringing all its trials), and the
result says how many distinct test songs and labels the trials rest on, with a
warning below :data:`FEW_SONGS`.

Leakage: :func:`holdout_runs` refuses runs whose training songs (of any concept
they trained) include a held-out song of the trials, and says how many it found;
``allow_overlap=True`` scores them anyway, with a warning in the result.

Unfinished runs: a run without ``DONE`` is refused when its model is loaded
(:func:`musicrep.evaluation.runs.load_run_model`); ``allow_unfinished=True`` scores it, with a warning in
the result. A model whose embeddings are NaN or infinite is an error, not a
score of 0 (a NaN similarity loses every comparison).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..concepts import PAPER_CONCEPTS, ordered
from ..data.store import FeatureStore, open_store
from ..errors import ConfigError, EvaluationError
from ..training.model import Encoder, embed_segments
from .provenance import refuse_overlap, trial_overlap
from .runs import load_runs, model_names, unfinished_warnings
from .trials import Trial, build_trials, count_labels, runs_split, split_name_for

log = logging.getLogger(__name__)

CONCEPTS: tuple[str, ...] = PAPER_CONCEPTS
#: below this many distinct anchor songs a concept's result carries a warning
FEW_SONGS = 30
#: bootstrap resamples of the test songs for the 95% interval
BOOTSTRAP = 2000

Embedder = Callable[[np.ndarray], np.ndarray]
"""Crops float32 [B, T, n_mels] -> embeddings float32 [B, D]."""


# --------------------------------------------------------------------------- scoring


def as_embedder(model: Encoder | Embedder, *, batch_size: int = 256) -> Embedder:
    """Wrap an :class:`~musicrep.training.model.Encoder` (any ``torch.nn.Module``) or a callable.

    The result maps crops float32 [B, T, n_mels] to float32 [B, D]; a module is
    run in eval mode without gradients.
    """
    if isinstance(model, torch.nn.Module):
        return lambda crops: embed_segments(model, segments=crops, batch_size=batch_size)
    if callable(model):
        return lambda crops: np.asarray(model(crops), dtype=np.float32)
    raise ConfigError(f"cannot evaluate a {type(model).__name__}: pass an Encoder or a callable")


def trial_scores(anchor: np.ndarray, *, positive: np.ndarray, negatives: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """Credit per trial: 1 when the positive is strictly the most similar, 1/(k+1)
    when it ties with k negatives at the top, 0 otherwise.

    Parameters
    ----------
    anchor, positive : float [n, D]
    negatives : float [n, N, D]

    Returns
    -------
    np.ndarray [shape=(n,)] in [0, 1]
    """

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)

    a, p, n = unit(anchor), unit(positive), unit(negatives)
    cos_p = np.einsum("id,id->i", a, p)
    cos_n = np.einsum("id,ikd->ik", a, n)
    beaten = (cos_n > cos_p[:, None] + atol).any(axis=1)
    ties = (np.abs(cos_n - cos_p[:, None]) <= atol).sum(axis=1)
    return np.where(beaten, 0.0, 1.0 / (1.0 + ties))


def score_trials(
    trials: Sequence[Trial],
    *,
    embedders: Mapping[str, Embedder],
    store: FeatureStore,
    segment_frames: int | None = None,
    chunk: int = 128,
) -> dict[str, np.ndarray]:
    """Per-trial credit ``{model: [n_trials]}`` of each model on the given trials.

    Each chunk of crops is read from the store once and embedded by every model
    (see :func:`trial_scores` for the credit of one trial).
    """
    segment_frames = segment_frames or store.feature_config.segment_frames
    dummy = np.random.default_rng(0)  # crops are fixed by their start; the rng is unused
    out: dict[str, list[np.ndarray]] = {name: [] for name in embedders}
    for i in range(0, len(trials), chunk):
        part = trials[i : i + chunk]
        n_neg = len(part[0].negatives)
        items = [it for t in part for it in (t.anchor, t.positive, *t.negatives)]
        crops = np.stack([store.crop(tid, rng=dummy, start=s, length=segment_frames) for tid, s in items])
        crops = crops.astype(np.float32, copy=False)
        for name, embed in embedders.items():
            emb = np.asarray(embed(crops)).reshape(len(part), 2 + n_neg, -1)
            if not np.isfinite(emb).all():
                # a NaN similarity loses every comparison: the trial would score 0 silently
                bad = int(np.flatnonzero(~np.isfinite(emb).all(axis=2).all(axis=1))[0])
                raise EvaluationError(
                    f"model {name!r} gave a NaN or infinite embedding for a crop of {part[bad].anchor[0]!r} "
                    "(or its positive / negatives); its checkpoint is damaged or its training diverged: "
                    "use another checkpoint"
                )
            out[name].append(trial_scores(emb[:, 0], positive=emb[:, 1], negatives=emb[:, 2:]))
    return {name: np.concatenate(v) if v else np.zeros(0) for name, v in out.items()}


def song_bootstrap(
    credit: np.ndarray, *, songs: Sequence[str], n_boot: int = BOOTSTRAP, seed: int = 0
) -> tuple[float, float, float]:
    """Standard deviation and 95% interval of the mean credit, resampling songs.

    Parameters
    ----------
    credit : float [n_trials], the credit of each trial
    songs : the anchor song of each trial (trials of one song are resampled together)

    Returns
    -------
    (std, low, high) of the bootstrap distribution of the accuracy
    """
    ids, inverse = np.unique(np.asarray(songs), return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(credit, dtype=np.float64), minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=n_boot)  # [n_boot, songs]
    accs = (weights @ sums) / (weights @ counts)
    low, high = np.percentile(accs, [2.5, 97.5])
    return float(accs.std()), float(low), float(high)


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class HoldoutResult:
    """Hold-out accuracy of models x concepts (Table 1).

    ``accuracy[model][concept]`` in [0, 1]; ``stderr`` the standard deviation and
    ``interval`` the 95% percentile interval of a bootstrap over the test songs;
    ``n_songs`` and ``n_labels`` the distinct anchor songs and their labels per
    concept; ``chance`` = 1 / (N + 1); ``skipped[concept]`` says why a concept was
    not evaluated; ``warnings`` what a reader must know (too few songs, overlap).
    """

    models: list[str]
    concepts: list[str]
    accuracy: dict[str, dict[str, float]]
    stderr: dict[str, dict[str, float]]
    n_trials: int
    n_negatives: int
    seed: int
    chance: float
    runs: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    interval: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    n_songs: dict[str, int] = dataclasses.field(default_factory=dict)
    n_labels: dict[str, int] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "HoldoutResult":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def table(self) -> str:
        """Plain-text table: rows = models, columns = concepts, plus chance."""
        w = max([len("model"), *(len(m) for m in self.models), len("chance")]) + 2
        cw = 22
        lines = ["model".ljust(w) + "".join(c.rjust(cw) for c in self.concepts)]
        for m in self.models:
            row = "".join(self.cell(m, c).rjust(cw) for c in self.concepts)
            lines.append(m.ljust(w) + row)
        lines.append("chance".ljust(w) + "".join(f"{self.chance:.3f}".rjust(cw) for _ in self.concepts))
        lines.append("test songs (labels)".ljust(w) + "".join(
            self.songs_cell(c).rjust(cw) for c in self.concepts))
        lines.append(f"({self.n_trials} trials per concept, {self.n_negatives} negatives, seed {self.seed}; "
                     "[95% interval of a bootstrap over the test songs])")
        lines += [f"{c}: not evaluated ({why})" for c, why in self.skipped.items()]
        lines += [f"WARNING: {w_}" for w_ in self.warnings]
        return "\n".join(lines)

    def songs_cell(self, concept: str) -> str:
        """``12 (6)``: the distinct test songs of a concept's trials and their labels."""
        return f"{self.n_songs.get(concept, '?')} ({self.n_labels.get(concept, '?')})"

    def cell(self, model: str, concept: str) -> str:
        """``0.512 [0.431, 0.590]`` (or "-" when not evaluated)."""
        if concept not in self.accuracy.get(model, {}):
            return "-"
        lo_hi = self.interval.get(model, {}).get(concept)
        text = f"{self.accuracy[model][concept]:.3f}"
        return text + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")


def holdout(
    models: Mapping[str, Encoder | Embedder],
    *,
    store: FeatureStore,
    split: Mapping[str, Any],
    concepts: Iterable[str] = CONCEPTS,
    n_trials: int = 1000,
    n_negatives: int = 4,
    seed: int = 0,
    segment_frames: int | None = None,
) -> HoldoutResult:
    """Score several models on the same fixed trials.

    Parameters
    ----------
    models : ``{name: Encoder or callable crops [B, T, n_mels] -> [B, D]}``
    store : the feature store the split refers to
    split : ``{"artist": Split, "album": Split}`` or ``{track_id: part}`` mappings
    concepts : which of artist / album / track to evaluate (a concept whose split
        is missing is skipped with a warning)
    n_trials, n_negatives, seed : see :func:`musicrep.evaluation.trials.build_trials`

    Returns
    -------
    HoldoutResult
    """
    embedders = {name: as_embedder(m) for name, m in models.items()}
    segment_frames = segment_frames or store.feature_config.segment_frames
    result = HoldoutResult(
        models=list(models), concepts=[], accuracy={name: {} for name in models},
        stderr={name: {} for name in models}, n_trials=n_trials, n_negatives=n_negatives, seed=seed,
        chance=1.0 / (n_negatives + 1), interval={name: {} for name in models},
    )
    for concept in concepts:
        trials = _concept_trials(result, store=store, split=split, concept=concept, segment_frames=segment_frames)
        if trials is not None:
            _score_concept(result, trials, embedders=embedders, store=store, split=split,
                           segment_frames=segment_frames)
    for w in result.warnings:
        log.warning("%s", w)
    return result


def _concept_trials(result: HoldoutResult, *, store: FeatureStore, split: Mapping[str, Any], concept: str,
                    segment_frames: int) -> list[Trial] | None:
    """The concept's trials, or None with the reason in ``result.skipped`` (one concept the
    collection cannot test does not sink the others)."""
    split_name = split_name_for(concept, split=split)
    if split_name not in split:
        log.warning("skipping the %s concept: the run has no %s split", concept, split_name)
        result.skipped[concept] = f"no {split_name} split in the runs"
        return None
    try:
        return build_trials(store=store, split=split, concept=concept, n_trials=result.n_trials,
                            n_negatives=result.n_negatives, seed=result.seed, segment_frames=segment_frames)
    except EvaluationError as exc:
        log.warning("skipping the %s concept: %s", concept, exc)
        result.skipped[concept] = str(exc)
        return None


def _score_concept(result: HoldoutResult, trials: Sequence[Trial], *, embedders: Mapping[str, Embedder],
                   store: FeatureStore, split: Mapping[str, Any], segment_frames: int) -> None:
    """Every model's accuracy and song-bootstrap interval on one concept's trials, into ``result``."""
    concept = trials[0].concept
    result.concepts.append(concept)
    anchors = [t.anchor[0] for t in trials]
    n_songs = result.n_songs[concept] = len(set(anchors))
    n_labels = result.n_labels[concept] = count_labels(store, split=split, concept=concept, songs=set(anchors))
    if n_songs < FEW_SONGS:
        of = f" of {n_labels} {concept}s" if concept != "track" else ""
        result.warnings.append(f"{concept}: the {result.n_trials} trials rest on {n_songs} test songs{of}; "
                               "read the interval, not the trial count")
    credits = score_trials(trials, embedders=embedders, store=store, segment_frames=segment_frames)
    for name, credit in credits.items():
        a = float(credit.mean())
        result.accuracy[name][concept] = a
        sd, low, high = song_bootstrap(credit, songs=anchors, seed=result.seed)
        result.stderr[name][concept], result.interval[name][concept] = sd, [low, high]
        log.info("hold-out %s on %s: %.3f [%.3f, %.3f] (%d trials, %d test songs)",
                 name, concept, a, low, high, len(credit), n_songs)


def holdout_runs(
    runs: Sequence[str | Path],
    *,
    store: FeatureStore | str | Path,
    split_from: str | Path | None = None,
    which: str = "best",
    n_trials: int = 1000,
    n_negatives: int = 4,
    seed: int = 0,
    allow_overlap: bool = False,
    allow_unfinished: bool = False,
) -> HoldoutResult:
    """Table 1 for trained runs: every run on every concept, on one set of trials.

    Parameters
    ----------
    runs : run folders (or checkpoint files inside them)
    store : FeatureStore, or a path to one
    split_from : the run (or split folder) whose split defines the trials; by
        default each split (artist, album) comes from the first run that has it.
        Runs trained on a different split get a warning: the trials' test songs
        may be among their training songs.
    which : "best" or "last" checkpoint
    allow_overlap : score runs whose training songs include held-out songs of the
        trials (with a warning in the result) instead of refusing them
    allow_unfinished : score runs whose training did not finish (no ``DONE``),
        with a warning in the result, instead of refusing them

    Raises
    ------
    EvaluationError
        when a run trained on a song that the trials hold out (and not ``allow_overlap``)
    CheckpointError
        when a run has no ``DONE`` (and not ``allow_unfinished``)
    """
    if not runs:
        raise ConfigError("no runs given; pass at least one run folder")
    store = open_store(store)
    loaded = load_runs(runs, which=which, allow_unfinished=allow_unfinished)
    split = runs_split([r.run_dir for r in loaded], split_from=split_from)
    problems = trial_overlap(loaded, split=split)
    refuse_overlap(problems, held="the hold-out trials", verb="score", allow_overlap=allow_overlap)
    names = model_names([(r.run_dir, r.info) for r in loaded])
    result = holdout(
        {n: r.encoder for n, r in zip(names, loaded)},
        # the paper's concepts, and every column concept the runs' splits hold
        store=store, split=split, concepts=ordered(set(CONCEPTS) | set(split)), n_trials=n_trials,
        n_negatives=n_negatives, seed=seed,
    )
    result.runs = {n: str(r.run_dir) for n, r in zip(names, loaded)}
    result.warnings += [f"scored despite overlap: {p}" for p in problems]
    result.warnings += unfinished_warnings(loaded)
    return result
