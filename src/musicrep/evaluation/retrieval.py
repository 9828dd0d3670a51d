"""Retrieval of same-artist / same-album songs among nearest neighbours, on held-out songs.

The hold-out test (:mod:`musicrep.evaluation.holdout`, Table 1) asks whether one positive
beats four negatives; a search engine is asked something harder: rank a whole
collection so that the songs of the query's artist (album) come first. Here every
held-out song of a split is a query against the other held-out songs of that split
(itself excluded), ranked by cosine similarity of L2-normalised song embeddings
(the mean of a song's non-overlapping segment embeddings, :func:`musicrep.evaluation.song_vectors.song_embeddings`).
A candidate is relevant when it has the query's label in that split.

- same-artist retrieval uses the artist split, same-album retrieval the album split;
- the pool is the split's **valid and test** songs (:data:`~musicrep.evaluation.retrieval_settings.PARTS`). Both are held
  out by every concept (:func:`musicrep.data.splits.make_splits` never trains one
  concept on a song another holds out), so no model has trained on a pool song.
  Valid songs are included because a test-only pool leaves most queries with no
  relevant song: the paper's album split keeps 1 test song per album (8/1/1), and
  the built-in corpus 1 per artist and 1 per album, so a test-only pool has no
  second song of any label. What valid songs did see: they picked the checkpoint
  (``best.pt``) by validation accuracy, a one-number choice, not training.
  ``parts=("test",)`` gives the stricter pool where a split has 2+ test songs per label.
- a query whose label has no other song in the pool cannot be scored; it is
  skipped and counted (``n_skipped``), never scored as 0;
- AP and P@k, with ties taken as their expectation over orders, are computed by
  :mod:`musicrep.evaluation.ranking`; a perfect ranking scores P@k =
  ``min(relevant, k) / k`` (the result records that ceiling), and a constant
  embedding scores exactly chance, which is how the chance row is made;
- intervals: 95% percentile bootstrap over the queries
  (:func:`musicrep.evaluation.holdout.song_bootstrap`, one query per song). Queries of one
  artist are not independent, so read a narrow interval on few labels with care.

Spaces compared (:func:`retrieval_runs`): each run's model, the concatenation of
the single-concept models' L2-normalised embeddings (re-normalised: its cosine is
the mean of their cosines, like Discogs' "multi" embeddings), and cheap baselines:
an untrained encoder and the mean/std of MFCCs or log-mel bands
(:mod:`musicrep.evaluation.baselines`), the latter standardised per dimension over the pool
so that no band dominates the cosine by its scale.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..concepts import PAPER_CONCEPTS
from ..data.store import FeatureStore, open_store
from ..errors import ConfigError, EvaluationError
from ..inference.embed import EmbeddingModel
from ..io import atomic_write_json
from ..training.model import Encoder
from .baselines import DISPLAY, check_names, summary_features
from .holdout import FEW_SONGS, song_bootstrap
from .provenance import refuse_overlap, trial_overlap
from .ranking import QueryScores, retrieval, unit_rows
from .retrieval_settings import BASELINES, PARTS, TASKS, K
from .runs import LoadedRun, load_runs, model_names, run_folder, run_store_path, unfinished_warnings
from .song_vectors import song_embeddings
from .trials import runs_split, split_parts

log = logging.getLogger(__name__)

#: the concepts whose models make the concatenated space
SINGLE_CONCEPTS: tuple[str, ...] = PAPER_CONCEPTS


def summarise(scores: QueryScores, *, track_ids: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """mAP and mean P@k with 95% bootstrap intervals over the queries.

    Parameters
    ----------
    scores : :func:`musicrep.evaluation.ranking.retrieval`'s result
    track_ids : [n], the pool's songs (the bootstrap resamples query songs)

    Returns
    -------
    ``{"map": float, "map_ci": [low, high], "p_at_k": float, "p_at_k_ci": [low, high]}``
    """
    songs = [track_ids[i] for i in scores.queries]
    out: dict[str, Any] = {}
    for key, values in (("map", scores.ap), ("p_at_k", scores.p_at_k)):
        _std, low, high = song_bootstrap(values, songs=songs, seed=seed)
        out[key], out[f"{key}_ci"] = float(values.mean()), [low, high]
    return out


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class RetrievalResult:
    """mAP and P@k of embedding spaces on held-out songs, per task (artist, album).

    ``metrics[space][task]`` is :func:`summarise`'s dict; ``chance[task]`` the
    expected ``{"map", "p_at_k"}`` of a random order; ``ceiling[task]`` the P@k of
    a perfect ranking (its mAP is 1); ``n_pool`` songs in the pool, ``n_queries``
    scored queries, ``n_skipped`` songs without another of their label,
    ``n_labels`` labels among the queries; ``kinds[space]`` is "model",
    "concatenation" or "baseline" and ``runs[space]`` the run folders behind it;
    ``skipped[task]`` says why a task was not measured.
    """
    spaces: list[str]
    tasks: list[str]
    metrics: dict[str, dict[str, dict[str, Any]]]
    k: int
    parts: list[str]
    seed: int
    n_pool: dict[str, int] = dataclasses.field(default_factory=dict)
    n_queries: dict[str, int] = dataclasses.field(default_factory=dict)
    n_skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    n_labels: dict[str, int] = dataclasses.field(default_factory=dict)
    chance: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    ceiling: dict[str, float] = dataclasses.field(default_factory=dict)
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)
    runs: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "RetrievalResult":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def cell(self, space: str, task: str, metric: str) -> str:
        """``0.512 [0.431, 0.590]`` for ``metric`` "map" or "p_at_k" ("–" when not measured)."""
        m = self.metrics.get(space, {}).get(task)
        if not m:
            return "–"
        low, high = m[f"{metric}_ci"]
        return f"{m[metric]:.3f} [{low:.3f}, {high:.3f}]"

    def columns(self) -> list[tuple[str, str, str]]:
        """``(task, metric, header)`` of each column: ``("artist", "map", "artist mAP")``, ..."""
        return [(t, m, f"{t} {name}") for t in self.tasks for m, name in (("map", "mAP"), ("p_at_k", f"P@{self.k}"))]

    def table(self) -> str:
        """Plain-text table: rows = spaces, columns = task x (mAP, P@k), with chance and ceiling rows."""
        cols = self.columns()
        w = max([len("space"), len("perfect ranking"), *(len(s) for s in self.spaces)]) + 2
        cw = 24
        lines = ["space".ljust(w) + "".join(h.rjust(cw) for _t, _m, h in cols)]
        lines += [s.ljust(w) + "".join(self.cell(s, t, m).rjust(cw) for t, m, _h in cols) for s in self.spaces]
        lines.append("chance".ljust(w) + "".join(f"{self.chance[t][m]:.3f}".rjust(cw) for t, m, _h in cols))
        lines.append("perfect ranking".ljust(w) + "".join(
            (1.0 if m == "map" else self.ceiling[t]).__format__(".3f").rjust(cw) for t, m, _h in cols))
        lines.append("; ".join(f"{t}: {self.n_queries[t]} queries of {self.n_labels[t]} {t}s, {self.n_skipped[t]} "
                               f"skipped, pool {self.n_pool[t]}" for t in self.tasks)
                     + f" ({' + '.join(self.parts)} songs; [95% bootstrap interval over queries])")
        lines += [f"{t}: not measured ({why})" for t, why in self.skipped.items()]
        lines += [f"WARNING: {w_}" for w_ in self.warnings]
        return "\n".join(lines)


def score_spaces(spaces: Mapping[str, np.ndarray], *, track_ids: Sequence[str],
                 pools: Mapping[str, tuple[list[str], list[str]]], k: int = K, seed: int = 0) -> RetrievalResult:
    """Retrieval of every space on every task's pool.

    Parameters
    ----------
    spaces : ``{name: float [len(track_ids), D]}``, song embeddings in ``track_ids`` order
    track_ids : the songs the spaces embed (every pool's songs among them)
    pools : ``{task: (pool track ids, their labels)}``
    k, seed : the cut-off of P@k; the bootstrap's seed

    Returns
    -------
    RetrievalResult (``kinds``, ``runs`` and ``parts`` left for the caller)
    """
    row = {t: i for i, t in enumerate(track_ids)}
    res = RetrievalResult(spaces=list(spaces), tasks=[], metrics={s: {} for s in spaces}, k=k, parts=[], seed=seed)
    for task, (ids, labels) in pools.items():
        oracle = retrieval(np.ones((len(ids), 1)), labels=labels, k=k)  # a constant space: random order
        if len(oracle.queries) == 0:
            res.skipped[task] = (f"none of its {len(ids)} pool songs shares its {task} with another; "
                                 "use a split with 2+ held-out songs per label")
            log.warning("retrieval %s not measured: %s", task, res.skipped[task])
            continue
        res.tasks.append(task)
        res.n_pool[task], res.n_queries[task], res.n_skipped[task] = len(ids), len(oracle.queries), oracle.n_skipped
        res.n_labels[task] = len({labels[i] for i in oracle.queries})
        res.chance[task] = {"map": float(oracle.ap.mean()), "p_at_k": float(oracle.p_at_k.mean())}
        res.ceiling[task] = float(np.mean(np.minimum(oracle.n_relevant, k)) / k)
        if res.n_queries[task] < FEW_SONGS:
            res.warnings.append(f"{task}: {res.n_queries[task]} queries of {res.n_labels[task]} {task}s; "
                                "read the interval, not the point")
        for name, vectors in spaces.items():
            scores = retrieval(np.asarray(vectors)[[row[t] for t in ids]], labels=labels, k=k)
            res.metrics[name][task] = summarise(scores, track_ids=ids, seed=seed)
            log.info("retrieval %s on %s: mAP %.3f, P@%d %.3f (%d queries)", name, task,
                     res.metrics[name][task]["map"], k, res.metrics[name][task]["p_at_k"], len(scores.queries))
    return res


# --------------------------------------------------------------------------- run folders


def pool(split: Mapping[str, Any], *, task: str, parts: Iterable[str] = PARTS) -> tuple[list[str], list[str]]:
    """``(track ids, labels)`` of the songs of ``task``'s split in ``parts``, sorted by track id."""
    part_of, labels = split_parts(split[task])
    if labels is None:
        raise ConfigError(f"the {task} split has no labels; pass a splits.Split (e.g. from evaluate.load_split)")
    ids = sorted(t for t, p in part_of.items() if p in set(parts))
    return ids, [labels[t] for t in ids]


def baseline_vectors(name: str, *, store: FeatureStore, track_ids: Sequence[str], reference: EmbeddingModel,
                     seed: int = 0) -> np.ndarray:
    """Song vectors float [n, D] of a baseline of :data:`BASELINES`.

    ``random``: an untrained encoder of ``reference``'s width, seeded by ``seed``,
    with ``reference``'s input normalisation (the training songs' scalar mean and
    std); ``logmel`` / ``mfcc``: :func:`musicrep.evaluation.baselines.summary_features`,
    each dimension standardised over ``track_ids``.
    """
    if name == "random":
        with torch.random.fork_rng(devices=[]):  # leave the caller's torch RNG where it was
            torch.manual_seed(seed)
            encoder = Encoder(width=reference.encoder.width, n_mels=reference.encoder.n_mels).eval()
        encoder.set_normalization(float(reference.encoder.mean), float(reference.encoder.std))
        return song_embeddings(encoder, store=store, track_ids=track_ids, cache=False)
    feats = np.stack([summary_features(store.frames(t), kind=name) for t in track_ids]).astype(np.float64)
    return (feats - feats.mean(axis=0)) / np.maximum(feats.std(axis=0), 1e-8)


def _spaces(loaded: Sequence[LoadedRun], *, store: FeatureStore, track_ids: Sequence[str],
            baselines: Sequence[str], concat: bool, seed: int, cache: bool) -> tuple[dict, dict, dict]:
    """``(vectors, kinds, runs)`` keyed by space name: the models, their concatenation, the baselines."""
    names = model_names([(r.run_dir, r.info) for r in loaded])
    models = [EmbeddingModel.from_checkpoint(r.encoder, r.info) for r in loaded]
    vectors = {n: song_embeddings(m, store=store, track_ids=track_ids, cache=cache) for n, m in zip(names, models)}
    kinds = {n: "model" for n in names}
    runs = {n: [str(r.run_dir)] for n, r in zip(names, loaded)}
    # the first run of each single concept, in the paper's order
    first = {str(r.info.concept): n for n, r in reversed(list(zip(names, loaded)))}
    parts = [(c, first[c]) for c in SINGLE_CONCEPTS if c in first]
    if concat and len(parts) >= 2:
        name = f"concat ({'+'.join(c for c, _n in parts)})"
        # unit parts, so each concept weighs the same; retrieval re-normalises the whole
        vectors[name] = np.concatenate([unit_rows(vectors[n]) for _c, n in parts], axis=1)
        kinds[name], runs[name] = "concatenation", [r for _c, n in parts for r in runs[n]]
    for b in baselines:
        vectors[DISPLAY[b]] = baseline_vectors(b, store=store, track_ids=track_ids, reference=models[0], seed=seed)
        kinds[DISPLAY[b]], runs[DISPLAY[b]] = "baseline", []
    return vectors, kinds, runs


def _pools(split: Mapping[str, Any], *, parts: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Each task's :func:`pool` (tasks whose split the runs have); refuses when every pool is empty."""
    pools = {t: pool(split, task=t, parts=parts) for t in TASKS if t in split}
    if not any(ids for ids, _l in pools.values()):
        raise EvaluationError(f"the runs' splits have no {' or '.join(TASKS)} songs in {parts}; nothing to measure")
    return pools


def _run_store(runs: Sequence[str | Path], *, store: FeatureStore | str | Path | None) -> FeatureStore:
    """``store``, else the store the first run's ``run.json`` names, opened."""
    store = store if store is not None else run_store_path(run_folder(runs[0]))
    if store is None:
        raise ConfigError(f"{runs[0]}: its run.json names no store; pass the store")
    return open_store(store)


def retrieval_runs(
    runs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    store: FeatureStore | str | Path | None = None,
    split_from: str | Path | None = None,
    which: str = "best",
    parts: Iterable[str] = PARTS,
    k: int = K,
    baselines: Iterable[str] = BASELINES,
    concat: bool = True,
    seed: int = 0,
    cache: bool = False,
    allow_overlap: bool = False,
    allow_unfinished: bool = False,
) -> RetrievalResult:
    """Same-artist and same-album retrieval of trained runs, their concatenation and baselines.

    Parameters
    ----------
    runs : run folders (or checkpoint files inside them)
    out : where to write the result as JSON (atomically); None writes nothing
    store : FeatureStore or its path; by default the one the first run's ``run.json`` names
    split_from : the run (or split folder) whose splits define the pools; by default
        each split comes from the first run that has it
    which : "best" or "last" checkpoint
    parts : the split parts in the pool, among ("valid", "test") (see the module docstring)
    k : the cut-off of P@k
    baselines : any of :data:`BASELINES`
    concat : add the concatenation of the single-concept (artist, album, track)
        models, when two or more are among ``runs``
    seed : the random encoder's weights and the bootstrap
    cache : embed through the runs' whole-store cache (``RUN/embeddings``, made when
        missing); False embeds only the pool songs and writes nothing under the runs
    allow_overlap, allow_unfinished : as in :func:`musicrep.evaluation.holdout.holdout_runs`

    Raises
    ------
    EvaluationError
        when a run trained on a pool song (and not ``allow_overlap``), or no task can be measured
    """
    parts = check_names(parts, valid=PARTS, what="pool part")
    baselines = check_names(baselines, valid=BASELINES, what="baseline")
    if not runs or not parts or k < 1:
        raise ConfigError(f"need run folders, a pool part among {list(PARTS)} and k >= 1 (got k={k})")
    store = _run_store(runs, store=store)
    loaded = load_runs(runs, which=which, allow_unfinished=allow_unfinished)
    split = runs_split([r.run_dir for r in loaded], split_from=split_from)
    problems = trial_overlap(loaded, split=split)
    refuse_overlap(problems, held="the retrieval pools", verb="measure", allow_overlap=allow_overlap)
    pools = _pools(split, parts=parts)
    track_ids = sorted({t for ids, _l in pools.values() for t in ids})
    vectors, kinds, space_runs = _spaces(loaded, store=store, track_ids=track_ids, baselines=baselines,
                                         concat=concat, seed=seed, cache=cache)
    result = score_spaces(vectors, track_ids=track_ids, pools=pools, k=k, seed=seed)
    result.parts, result.kinds, result.runs = list(parts), kinds, space_runs
    result.skipped.update({t: f"no {t} split in the runs" for t in TASKS if t not in split})
    result.warnings += [f"measured despite overlap: {p}" for p in problems]
    result.warnings += unfinished_warnings(loaded)
    if out is not None:
        atomic_write_json(out, obj=result.to_dict())
    return result
