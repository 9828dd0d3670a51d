"""Multi-label tagging with a linear probe on song embeddings: ROC-AUC and PR-AUC, macro over tags.

The tagging counterpart of :mod:`musicrep.evaluation.transfer` (e.g. MagnaTagATune's top-50
tags, :func:`musicrep.data.datasets.from_mtat`). Song embedding (mean over segments,
:func:`musicrep.evaluation.song_vectors.song_embeddings`) -> one sigmoid output per tag, trained
like the genre probe of :mod:`musicrep.evaluation.probe`: scalar standardisation, Glorot-uniform
weights and zero bias, SGD with learning rate 0.01 and Nesterov momentum 0.9,
minibatches of 16 songs in a new order every epoch, early stopping on the
validation loss with patience 8 (the weights of the best epoch are kept), one fit
per seed in ``seeds``.

The loss is binary cross-entropy *summed* over tags and averaged over songs, so
each tag's weights get the very update a one-tag probe would get. (Keras's
``binary_crossentropy`` averages over tags instead, which under plain SGD divides
the learning rate by the number of tags.) Reported losses are per tag.

Metrics, as the tagging literature reports them (``sklearn.metrics.roc_auc_score``
and ``average_precision_score`` with ``average="macro"`` in Won et al.'s
sota-music-tagging-models): ROC-AUC (tied scores count one half) and PR-AUC as
average precision (the precision at each distinct score, weighted by the recall it
adds), each computed per tag on the test songs and averaged over tags. A tag
without both a positive and a negative test song has no AUC: it is left out of the
mean and listed in :attr:`TaggingResult.skipped_tags`. Chance level: ROC-AUC 0.5,
PR-AUC the mean test prevalence of the scored tags (:attr:`TaggingResult.prevalence`).

The split is the catalog's own ``split`` column (train/valid/test; MTAT's folder
split), fixed in every trial: only the initialisation and the minibatch order vary.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy.special import expit

from ..data.catalog import Catalog, Track, read_csv
from ..data.splits import normalize_part
from ..data.store import FeatureStore, open_store
from ..errors import ConfigError, EvaluationError
from ..training.model import Encoder
from .probe import trial_summary
from .probe_fit import STANDARDIZATIONS, SGDProbeSettings, sgd_early_stopping, standardize_features
from .provenance import overlap_warnings  # the same overlap check as transfer's
from .runs import named_runs
from .song_vectors import song_embeddings
from .tag_metrics import macro_scores, scored_tags

log = logging.getLogger(__name__)

PARTS: tuple[str, ...] = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class TaggingConfig(SGDProbeSettings):
    """Settings of the tagging probe: those of :class:`musicrep.evaluation.probe.ProbeConfig`
    that a sigmoid probe uses (same names, same defaults), and where the tags are.

    ``tag_column``: the catalog column holding each song's tags, joined by
    ``tag_separator`` (``tags`` and ``;`` in :func:`musicrep.data.datasets.from_mtat`'s catalogs).
    """

    tag_column: str = "tags"
    tag_separator: str = ";"

    def __post_init__(self) -> None:
        if self.standardize not in STANDARDIZATIONS:
            raise ConfigError(f"standardize={self.standardize!r} is not one of {list(STANDARDIZATIONS)}")
        if not self.tag_separator:
            raise ConfigError("tag_separator must not be empty")


# --------------------------------------------------------------------------- labels


def tag_matrix(catalog: Sequence[Track], *, track_ids: Sequence[str], config: TaggingConfig = TaggingConfig()
               ) -> tuple[list[str], np.ndarray]:
    """Tag names and the song-by-tag label matrix.

    Parameters
    ----------
    catalog : tracks with ``config.tag_column`` (a song without tags is a negative for every tag)
    track_ids : the songs, in row order; each must be in ``catalog``

    Returns
    -------
    tags : list[str] [T], most frequent first (ties by name)
    y : np.ndarray [shape=(n, T), uint8], 1 where song i carries tag j
    """
    by_id = {t.track_id: t for t in catalog}
    per_song = [[s.strip() for s in by_id[t].get(config.tag_column).split(config.tag_separator) if s.strip()]
                for t in track_ids]
    counts = Counter(tag for song in per_song for tag in set(song))
    if not counts:
        raise EvaluationError(f"column {config.tag_column!r} is empty on all {len(track_ids)} songs; "
                              "tagging needs tagged songs (e.g. a catalog from `musicrep catalog mtat`)")
    tags = sorted(counts, key=lambda tag: (-counts[tag], tag))
    column = {tag: j for j, tag in enumerate(tags)}
    y = np.zeros((len(track_ids), len(tags)), dtype=np.uint8)
    for i, song in enumerate(per_song):
        y[i, [column[tag] for tag in song]] = 1
    return tags, y


def tagging_split(catalog: Sequence[Track], *, track_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows of ``track_ids`` in each part of the catalog's own ``split`` column.

    Returns
    -------
    ``{"train"|"valid"|"test": int [n_part]}``; songs with an empty split are left out
    """
    by_id = {t.track_id: t for t in catalog}
    rows: dict[str, list[int]] = {p: [] for p in PARTS}
    for i, tid in enumerate(track_ids):
        value = by_id[tid].get("split").strip()
        if value:
            rows[normalize_part(value, where=f"split of track {tid}")].append(i)
    parts = {p: np.array(r, dtype=np.int64) for p, r in rows.items()}
    missing = [p for p in PARTS if not len(parts[p])]
    if missing:
        raise EvaluationError(f"no {', '.join(missing)} songs in the catalog's split column; tagging uses the "
                              "dataset's own train/valid/test split (MTAT's catalog has one)")
    left_out = len(track_ids) - sum(len(r) for r in parts.values())
    if left_out:
        log.info("%d songs have no split and are left out", left_out)
    return parts


# --------------------------------------------------------------------------- probe


def _bce(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    """Binary cross-entropy of the sigmoid layer ``(w, b)`` on ``(x, y)``, mean per song and tag."""
    z = x @ w + b
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))  # stable for any logit


def fit_tag_probe(
    *,
    x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
    config: TaggingConfig = TaggingConfig(), seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One sigmoid output per tag, trained by minibatch SGD with Nesterov momentum and
    stopped early on the validation loss (:func:`musicrep.evaluation.probe_fit.fit_sgd_probe`'s loop).

    Parameters
    ----------
    x_train, x_valid : float [n_*, D] standardised features
    y_train, y_valid : 0/1 [n_*, T] tags
    seed : draws the Glorot-uniform initial weights and each epoch's minibatch order

    Returns
    -------
    w : float64 [D, T] and b : float64 [T], of the epoch with the lowest validation loss
    info : ``epochs`` (that epoch), ``stopped_epoch``, ``valid_loss`` (per tag)
    """
    x, y = np.asarray(x_train, dtype=np.float64), np.asarray(y_train, dtype=np.float64)
    xv, yv = np.asarray(x_valid, dtype=np.float64), np.asarray(y_valid, dtype=np.float64)
    # the gradient is summed over tags (a sigmoid per tag): see the module docstring
    w, b, info = sgd_early_stopping(x=x, targets=y, output=expit, valid_loss=lambda w, b: _bce(xv, yv, w, b),
                                    config=config, seed=seed)
    return w, b, {k: info[k] for k in ("epochs", "stopped_epoch", "valid_loss")}


@dataclasses.dataclass
class Summary:
    """One metric over trials: mean, sample std (ddof 1), Student-t 95 % interval (None for one trial)."""

    mean: float
    std: float
    values: list[float]
    ci95_low: float | None = None
    ci95_high: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        mean, std, low, high = trial_summary(values)
        return cls(mean=mean, std=std, values=[float(v) for v in values], ci95_low=low, ci95_high=high)

    def cell(self) -> str:
        interval = "[one trial]" if self.ci95_low is None else f"[{self.ci95_low:.3f}, {self.ci95_high:.3f}]"
        return f"{self.mean:.3f} +- {self.std:.3f} {interval}"


@dataclasses.dataclass
class TagProbeResult:
    """Macro ROC-AUC and PR-AUC of one method over trials; ``per_tag[tag]``: both, mean over trials."""

    method: str
    roc_auc: Summary
    pr_auc: Summary
    per_tag: dict[str, dict[str, float]]
    chosen: list[dict] = dataclasses.field(default_factory=list)

    @property
    def n_trials(self) -> int:
        return len(self.roc_auc.values)

    @classmethod
    def from_dict(cls, data: Mapping) -> "TagProbeResult":
        return cls(method=data["method"], roc_auc=Summary(**data["roc_auc"]), pr_auc=Summary(**data["pr_auc"]),
                   per_tag=dict(data["per_tag"]), chosen=list(data.get("chosen", [])))


def tag_probe(
    *,
    features: np.ndarray, y: np.ndarray, parts: Mapping[str, np.ndarray], tags: Sequence[str],
    config: TaggingConfig = TaggingConfig(), method: str = "probe",
) -> TagProbeResult:
    """The tagging probe in one trial per seed of ``config.seeds``, scored on the test songs.

    Parameters
    ----------
    features : float [n, D] song embeddings (standardised here on the training songs)
    y : 0/1 [n, T] tags (:func:`tag_matrix`)
    parts : ``{"train"|"valid"|"test": int [n_part]}`` rows of ``features`` (:func:`tagging_split`)
    tags : tag names [T]
    """
    if not config.seeds:
        raise ConfigError("tagging needs at least one trial seed (seeds=...)")
    xtr, xva, xte = standardize_features(*(features[parts[p]] for p in PARTS), kind=config.standardize)
    ytr, yva, yte = (y[parts[p]] for p in PARTS)
    if not scored_tags(yte).any():
        raise EvaluationError(f"no tag has both positive and negative songs among the {len(yte)} test songs")
    rocs, prs, chosen = [], [], []
    for seed in config.seeds:
        w, b, info = fit_tag_probe(x_train=xtr, y_train=ytr, x_valid=xva, y_valid=yva, config=config, seed=seed)
        roc, pr, scored = macro_scores(yte, scores=xte @ w + b)  # logits: the sigmoid keeps their order
        rocs.append(roc)
        prs.append(pr)
        chosen.append({**info, "seed": seed})
    roc_t, pr_t = np.mean(rocs, axis=0), np.mean(prs, axis=0)
    per_tag = {tags[j]: {"roc_auc": float(roc_t[j]), "pr_auc": float(pr_t[j])} for j in np.flatnonzero(scored)}
    res = TagProbeResult(method=method, roc_auc=Summary.of([r[scored].mean() for r in rocs]),
                         pr_auc=Summary.of([p[scored].mean() for p in prs]), per_tag=per_tag, chosen=chosen)
    log.info("tagging %s: ROC-AUC %.3f, PR-AUC %.3f over %d trials", method, res.roc_auc.mean, res.pr_auc.mean,
             res.n_trials)
    return res


# --------------------------------------------------------------------------- top level


@dataclasses.dataclass
class TaggingResult:
    """The tagging test for one dataset: ``methods[name]`` is a :class:`TagProbeResult`.

    ``tags``: the tags scored (both classes among the test songs); ``skipped_tags``:
    those left out of the macro averages; ``prevalence``: mean share of test songs
    carrying a scored tag (the PR-AUC of a constant score); ``warnings``: overlaps
    between these songs and the encoders' training songs.
    """

    dataset: str
    tags: list[str]
    skipped_tags: list[str]
    counts: dict[str, int]
    prevalence: float
    methods: dict[str, TagProbeResult]
    runs: dict[str, str] = dataclasses.field(default_factory=dict)
    tag_column: str = "tags"
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "TaggingResult":
        fields = {f.name for f in dataclasses.fields(cls)} - {"methods"}
        return cls(**{k: data[k] for k in fields if k in data},
                   methods={k: TagProbeResult.from_dict(v) for k, v in data["methods"].items()})

    def table(self) -> str:
        """Plain text: one row per method, ROC-AUC and PR-AUC mean +- std [95 % interval],
        trials; the chance row; then a line per warning."""
        w = max([len("chance (constant score)"), *(len(m) for m in self.methods)]) + 2
        head = (f"{self.dataset}: {self.tag_column}, {len(self.tags)} tags scored"
                + (f" ({len(self.skipped_tags)} without both classes in test: {', '.join(self.skipped_tags)})"
                   if self.skipped_tags else "")
                + "; " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        lines = [head, "method".ljust(w) + "ROC-AUC (macro)".rjust(32) + "PR-AUC (macro)".rjust(32) + "trials".rjust(8)]
        for name, res in self.methods.items():
            lines.append(name.ljust(w) + res.roc_auc.cell().rjust(32) + res.pr_auc.cell().rjust(32)
                         + str(res.n_trials).rjust(8))
        lines.append("chance (constant score)".ljust(w) + "0.500".rjust(32) + f"{self.prevalence:.3f}".rjust(32))
        lines += [f"WARNING: {line}" for line in self.warnings]
        return "\n".join(lines)


def _catalog_of(catalog: Catalog | str | Path | None, store: FeatureStore) -> Catalog:
    if catalog is None:
        return store.catalog  # a store keeps its catalog's extra columns (tags, split)
    if isinstance(catalog, (str, Path)):
        return read_csv(catalog)
    return catalog


def tagging(
    models: Mapping[str, str | Path | Encoder],
    *,
    store: FeatureStore | str | Path,
    catalog: Catalog | str | Path | None = None,
    config: TaggingConfig = TaggingConfig(),
    dataset: str | None = None,
    allow_unfinished: bool = False,
) -> TaggingResult:
    """The tagging probe on each model's song embeddings, over the same split and seeds.

    Parameters
    ----------
    models : ``{name: run folder or Encoder}``; embedded through
        :func:`musicrep.evaluation.song_vectors.song_embeddings` (a run's vectors are cached under it)
    store : FeatureStore (or path) of the tagged collection
    catalog : Catalog or catalog CSV with the tag and ``split`` columns; the store's
        own catalog by default. Songs in the store and the catalog are used.
    config : see :class:`TaggingConfig`
    dataset : name shown in tables (default: the store folder's name)
    allow_unfinished : use run folders whose training did not finish (no ``DONE``)

    Returns
    -------
    TaggingResult; for run folders, with a warning per run whose training songs
    include these songs
    """

    store = open_store(store)
    catalog = _catalog_of(catalog, store)
    known = {t.track_id for t in catalog}
    ids = [t for t in store.track_ids if t in known]
    if not ids:
        raise EvaluationError(f"{store.path}: none of its songs is in the catalog; give the catalog the store was "
                              "prepared from")
    parts = tagging_split(catalog, track_ids=ids)
    tags, y = tag_matrix(catalog, track_ids=ids, config=config)
    scored = scored_tags(y[parts["test"]])
    dataset = dataset or Path(getattr(store, "path", "dataset")).name
    log.info("tagging on %s: %d songs, %d tags (%d scored), %s", dataset, len(ids), len(tags), scored.sum(),
             {p: len(r) for p, r in parts.items()})
    runs = {k: str(v) for k, v in models.items() if isinstance(v, (str, Path))}
    methods = {}
    for name, model in models.items():
        vec = song_embeddings(model, store=store, track_ids=ids, allow_unfinished=allow_unfinished)
        methods[name] = tag_probe(features=vec, y=y, parts=parts, tags=tags, config=config, method=name)
    return TaggingResult(
        dataset=dataset, tags=[t for t, s in zip(tags, scored) if s],
        skipped_tags=[t for t, s in zip(tags, scored) if not s],
        counts={p: len(r) for p, r in parts.items()}, prevalence=float(y[parts["test"]][:, scored].mean()),
        methods=methods, runs=runs, tag_column=config.tag_column,
        warnings=overlap_warnings(list(runs.values()), store=store, track_ids=ids),
    )


def tagging_runs(
    runs: Sequence[str | Path],
    *,
    store: FeatureStore | str | Path,
    catalog: Catalog | str | Path | None = None,
    config: TaggingConfig = TaggingConfig(),
    dataset: str | None = None,
    allow_unfinished: bool = False,
) -> TaggingResult:
    """:func:`tagging` for trained run folders, named by their concept."""

    return tagging(named_runs(runs, allow_unfinished=allow_unfinished), store=store, catalog=catalog, config=config,
                   dataset=dataset, allow_unfinished=allow_unfinished)
