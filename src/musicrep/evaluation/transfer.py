"""Transfer to a genre-labelled collection with a linear probe: the paper's Table 2.

Song embedding (mean of the encoder's embeddings over non-overlapping 129-frame
segments) -> a linear softmax classifier, trained on the training part, stopped on
the validation part, scored on the test part. This module owns the protocol: the
settings (:class:`TransferConfig`), the split and the trials, the song embeddings,
and the table (:class:`TransferResult`). The probe itself and its departures from
the authors' are in :mod:`musicrep.evaluation.probe`; the baselines (``genres``, ``random``,
``mfcc``, ``logmel``) in :mod:`musicrep.evaluation.baselines`.

10 trials (``seeds``). Each trial has its own probe initialisation, its own
minibatch order and, when the collection has no split of its own, its own
stratified split (split seed ``split_seed + trial seed``). Reported: the mean, the
sample standard deviation and a Student-t 95 % interval of the mean over trials.

The split is the dataset's own when its catalog has a ``split`` column
(train/valid/test, also training/validation: FMA's column, GTZAN's fault-filtered
lists); it is then fixed and only the initialisation and the minibatch order vary
between trials. Otherwise every trial draws a seeded stratified split. Song
features are computed once and indexed per trial; the baselines run on the same
trials.

For run folders, :func:`musicrep.evaluation.provenance.transfer_overlap` checks whether the
transfer songs are among the encoder's own training songs; each overlap becomes a
warning in :attr:`TransferResult.warnings`, printed under the table.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..config import setting
from ..data.catalog import Track
from ..data.splits import normalize_part
from ..data.store import FeatureStore, open_store
from ..errors import ConfigError, EvaluationError
from ..training.model import Encoder
from .baselines import BASELINES, DISPLAY, BaselineConfig, check_baselines, run_baselines, summary_features
from .probe import ProbeResult, Trial, TrialPlan, linear_probe, probe_trials
from .provenance import overlap_warnings
from .runs import named_runs
from .song_vectors import song_embeddings

__all__ = [
    # defined here
    "TransferConfig", "TransferResult", "dataset_split", "trial_plan", "transfer", "transfer_runs", 
    # kept importable from here because tests/test_transfer.py pins them; they live in
    # musicrep.evaluation.probe and musicrep.evaluation.baselines
    "DISPLAY", "ProbeResult", "linear_probe", "summary_features",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TransferConfig(BaselineConfig):
    """Settings of the transfer test: the probe's and the baselines' (inherited from
    :class:`musicrep.evaluation.probe.ProbeConfig` and :class:`musicrep.evaluation.baselines.BaselineConfig`,
    so every setting stays one flat ``--set`` key), the labels and the split.

    The defaults are the authors' probe: ``probe="sgd"`` with ``probe_lr`` 0.01,
    ``probe_momentum`` 0.9 (Nesterov), ``probe_batch_size`` 16, early stopping on the
    validation loss with ``probe_patience`` 8, ``standardize="scalar"`` and 10
    trials (``seeds``).

    Departures (authors unspecified or our additions): ``probe_max_epochs`` caps
    training; ``cnn_trials``: the genre CNN baseline runs in the first 3 trials only
    (it trains a CNN per trial); ``standardize="per_dim"`` and ``probe="adam_grid"``
    (which uses ``l2_grid``, ``lr_grid``, ``probe_epochs``, ``probe_eval_every``)
    are alternatives.

    Here: ``label_column`` (the catalog column classified); ``split_seed``,
    ``valid_fraction`` and ``test_fraction`` of the stratified split drawn when the
    collection has no split of its own.
    """

    label_column: str = "genre"
    split_seed: int = 0
    valid_fraction: float = setting(0.15, min=0.0, max=0.5, min_exclusive=True)
    test_fraction: float = setting(0.15, min=0.0, max=0.5, min_exclusive=True)


# --------------------------------------------------------------------------- split


def dataset_split(
    catalog: Sequence[Track], *, config: TransferConfig = TransferConfig()
) -> tuple[dict[str, str], dict[str, str], str]:
    """Labels and train/valid/test parts of a genre-labelled catalog.

    Returns
    -------
    labels : ``{track_id: label}`` for tracks with a non-empty label
    parts : ``{track_id: "train"|"valid"|"test"}`` (tracks outside the dataset's
        own split are left out)
    source : "dataset", "dataset (valid carved from train)" or "stratified (seed k)"
        (seed ``config.split_seed``)
    """
    labels = {t.track_id: t.get(config.label_column).strip() for t in catalog if t.get(config.label_column).strip()}
    if len(set(labels.values())) < 2:
        raise EvaluationError(
            f"column {config.label_column!r} has {len(set(labels.values()))} distinct label(s) on "
            f"{len(labels)} tracks; transfer needs at least two classes"
        )
    own = {t.track_id: t.get("split").strip() for t in catalog if t.track_id in labels and t.get("split").strip()}
    rng = np.random.default_rng(config.split_seed)
    if own:
        parts = {tid: normalize_part(p, where=f"split of track {tid}") for tid, p in own.items()}
        source = "dataset"
        dropped = len(labels) - len(parts)
        if dropped:
            log.info("%d labelled tracks are outside the dataset's own split and are left out", dropped)
        if "valid" not in parts.values():
            train = [t for t, p in parts.items() if p == "train"]
            parts.update(_stratified(train, labels, rng, fractions={"valid": config.valid_fraction}))
            source = "dataset (valid carved from train)"
    else:
        parts = _stratified(
            list(labels), labels, rng, fractions={"valid": config.valid_fraction, "test": config.test_fraction}
        )
        source = f"stratified (seed {config.split_seed})"
    for need in ("train", "valid", "test"):
        if need not in parts.values():
            raise EvaluationError(f"the transfer split has no {need} songs; use a larger collection")
    return {t: labels[t] for t in parts}, parts, source


def _stratified(ids: Sequence[str], labels: Mapping[str, str], rng: np.random.Generator, *, fractions: Mapping[str, float]) -> dict[str, str]:
    parts: dict[str, str] = {}
    by_label: dict[str, list[str]] = {}
    for t in sorted(ids):
        by_label.setdefault(labels[t], []).append(t)
    for lab in sorted(by_label):
        members = [by_label[lab][i] for i in rng.permutation(len(by_label[lab]))]
        pos = 0
        for part, frac in fractions.items():
            n = int(round(frac * len(members)))
            if n == 0 and len(members) >= len(fractions) + 1:
                n = 1
            for t in members[pos : pos + n]:
                parts[t] = part
            pos += n
        for t in members[pos:]:
            parts[t] = "train"
    return parts


def trial_plan(catalog: Sequence[Track], *, track_ids: Sequence[str], config: TransferConfig = TransferConfig()) -> TrialPlan:
    """One :class:`Trial` per seed of ``config.seeds``.

    A collection with its own split keeps it in every trial (only the probe's
    initialisation and minibatch order vary); otherwise trial ``s`` draws a
    stratified split with seed ``config.split_seed + s``.

    Parameters
    ----------
    catalog : the collection's tracks (with ``config.label_column`` and maybe ``split``)
    track_ids : the store's tracks, in store order
    """
    if not config.seeds:
        raise ConfigError("transfer needs at least one trial seed (seeds=...)")
    labels, parts, source = dataset_split(catalog, config=config)
    per_trial: list[tuple[int, int | None, dict[str, str]]] = []
    if source.startswith("stratified"):
        for seed in config.seeds:
            split_seed = config.split_seed + seed
            trial_config = dataclasses.replace(config, split_seed=split_seed)
            per_trial.append((seed, split_seed, dataset_split(catalog, config=trial_config)[1]))
        source = f"stratified, drawn anew each trial with split seed {config.split_seed} + trial seed"
    else:
        per_trial = [(seed, None, parts) for seed in config.seeds]
        source += ", fixed in every trial: only the probe's initialisation and minibatch order vary"
    ids = [t for t in track_ids if t in labels]
    classes = sorted({labels[t] for t in ids})
    cls_index = {c: i for i, c in enumerate(classes)}
    trials = []
    for seed, split_seed, p in per_trial:
        index = {part: np.array([i for i, t in enumerate(ids) if p.get(t) == part], dtype=np.int64)
                 for part in ("train", "valid", "test")}
        y = {part: np.array([cls_index[labels[ids[i]]] for i in rows], dtype=np.int64) for part, rows in index.items()}
        trials.append(Trial(seed=seed, split_seed=split_seed, index=index, y=y))
    counts = {part: len(rows) for part, rows in trials[0].index.items()}
    return TrialPlan(track_ids=ids, classes=classes, counts=counts, source=source, trials=trials)


# --------------------------------------------------------------------------- top level


def _acc_cell(res: ProbeResult) -> str:
    if res.ci95_low is None or res.ci95_high is None:
        return f"{res.accuracy_mean:.3f} +- {res.accuracy_std:.3f} [one trial]"
    return f"{res.accuracy_mean:.3f} +- {res.accuracy_std:.3f} [{res.ci95_low:.3f}, {res.ci95_high:.3f}]"


@dataclasses.dataclass
class TransferResult:
    """Table 2 for one dataset: ``methods[name]`` is a :class:`ProbeResult`.

    Model names come first (e.g. "artist", "joint"), then the baselines
    ("genres", "random", "mfcc", "logmel"; see :data:`DISPLAY`). ``label_column``
    is the catalog column classified; ``warnings`` are the overlaps between the
    transfer songs and the encoders' training songs
    (:func:`musicrep.evaluation.provenance.transfer_overlap`); ``caveats`` what the
    data lets the figures say (a small test part: :func:`small_test_caveats`).
    """

    dataset: str
    classes: list[str]
    counts: dict[str, int]
    split_source: str
    methods: dict[str, ProbeResult]
    runs: dict[str, str] = dataclasses.field(default_factory=dict)
    label_column: str = "genre"
    warnings: list[str] = dataclasses.field(default_factory=list)
    caveats: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "classes": self.classes, "counts": self.counts,
            "split_source": self.split_source, "runs": self.runs, "label_column": self.label_column,
            "warnings": list(self.warnings), "caveats": list(self.caveats), "methods": {k: v.to_dict() for k, v in self.methods.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "TransferResult":
        return cls(
            dataset=data["dataset"], classes=list(data["classes"]), counts=dict(data["counts"]),
            split_source=data["split_source"], runs=dict(data.get("runs", {})),
            methods={k: ProbeResult.from_dict(v) for k, v in data["methods"].items()},
            label_column=str(data.get("label_column", "genre")), warnings=list(data.get("warnings", [])),
            caveats=list(data.get("caveats", [])),
        )

    def table(self) -> str:
        """Plain-text table: one row per method, accuracy mean +- std [95 % interval],
        trials; then a line per warning."""
        w = max([len("chance (majority class)"), *(len(DISPLAY.get(m, m)) for m in self.methods)]) + 2
        lines = [f"{self.dataset}: {self.label_column}, {len(self.classes)} classes, "
                 + ", ".join(f"{k} {v}" for k, v in self.counts.items()) + f"; split: {self.split_source}",
                 "method".ljust(w) + "accuracy: mean +- std [95% CI]".rjust(36) + "trials".rjust(8)]
        for name, res in self.methods.items():
            lines.append(DISPLAY.get(name, name).ljust(w) + _acc_cell(res).rjust(36) + str(res.n_trials).rjust(8))
        lines.append("chance (majority class)".ljust(w) + f"{self.majority:.3f}".rjust(36))
        lines += [f"WARNING: {line}" for line in self.warnings] + [f"NOTE: {line}" for line in self.caveats]
        return "\n".join(lines)

    @property
    def majority(self) -> float:
        """Test accuracy of always predicting the most frequent test class."""
        any_res = next(iter(self.methods.values()), None)
        if any_res is None:
            return float("nan")
        rows = np.asarray(any_res.confusion).sum(axis=1)
        return float(rows.max() / max(rows.sum(), 1))


def transfer(
    models: Mapping[str, str | Path | Encoder],
    *,
    store: FeatureStore | str | Path,
    config: TransferConfig = TransferConfig(),
    baselines: Iterable[str] = BASELINES,
    dataset: str | None = None,
    allow_unfinished: bool = False,
) -> TransferResult:
    """Linear-probe transfer of several models, plus baselines, over the same trials.

    Parameters
    ----------
    models : ``{name: run folder or Encoder}``; runs are embedded through
        :func:`musicrep.inference.store_embeddings.embed_store` (cached), once for all labelled songs
    store : FeatureStore (or path) of a genre-labelled collection
    config : see :class:`TransferConfig`
    baselines : any of "genres", "random", "mfcc", "logmel"
    dataset : name shown in tables (default: the store folder's name)
    allow_unfinished : use run folders whose training did not finish (no ``DONE``)

    Returns
    -------
    TransferResult; for run folders, with a warning per run whose training songs
    include transfer songs
    """
    baselines = check_baselines(baselines)
    store = open_store(store)
    dataset = dataset or Path(getattr(store, "path", "dataset")).name
    plan = trial_plan(store.catalog, track_ids=store.track_ids, config=config)
    log.info("transfer on %s: %d classes, %s, %d trials (%s split)", dataset, len(plan.classes), plan.counts,
             len(plan.trials), plan.source)
    runs = {k: str(v) for k, v in models.items() if isinstance(v, (str, Path))}
    warnings = overlap_warnings(list(runs.values()), store=store, track_ids=plan.track_ids)

    methods, width = _probe_models(models, store=store, plan=plan, config=config, allow_unfinished=allow_unfinished)
    embed = functools.partial(song_embeddings, store=store, track_ids=plan.track_ids)
    methods.update(run_baselines(baselines, store=store, plan=plan, config=config, width=width, embed=embed))
    return TransferResult(
        dataset=dataset, classes=plan.classes, counts=plan.counts, split_source=plan.source, methods=methods,
        runs=runs, label_column=config.label_column, warnings=warnings, caveats=small_test_caveats(plan),
    )


#: below this many test songs per trial, or per class, Table 2 says its figure rests on little data
MIN_TEST_SONGS = 30
MIN_TEST_PER_CLASS = 5


def small_test_caveats(plan: TrialPlan) -> list[str]:
    """A caveat when a trial's test part is small: one song then moves the accuracy by over 3 points,
    and a class with a few test songs is scored on those few."""
    n_test = plan.counts.get("test", 0)
    per_class = np.bincount(plan.trials[0].y["test"], minlength=len(plan.classes)) if plan.trials else []
    fewest = int(min(per_class)) if len(per_class) else 0
    if n_test >= MIN_TEST_SONGS and fewest >= MIN_TEST_PER_CLASS:
        return []
    return [f"each trial's test accuracy rests on {n_test} test songs ({fewest} in the smallest class); one song "
            f"moves it by {1 / max(n_test, 1):.3f}: read the interval, not the mean"]


def _probe_models(
    models: Mapping[str, str | Path | Encoder], *, store: FeatureStore, plan: TrialPlan, config: TransferConfig, allow_unfinished: bool = False
) -> tuple[dict[str, ProbeResult], int]:
    """The probe on each model's song embeddings, and the width of the encoder
    baselines: ``config.baseline_width``, else half the first model's embedding
    size, else 256."""
    methods: dict[str, ProbeResult] = {}
    width = config.baseline_width
    for name, model in models.items():
        vec = song_embeddings(model, store=store, track_ids=plan.track_ids, allow_unfinished=allow_unfinished)
        methods[name] = probe_trials(name, features=vec, plan=plan, config=config)
        width = width or vec.shape[1] // 2
    return methods, width or 256


def transfer_runs(
    runs: Sequence[str | Path],
    *,
    store: FeatureStore | str | Path,
    config: TransferConfig = TransferConfig(),
    baselines: Iterable[str] = BASELINES,
    dataset: str | None = None,
    allow_unfinished: bool = False,
) -> TransferResult:
    """:func:`transfer` for trained run folders, named by their concept."""
    return transfer(named_runs(runs, allow_unfinished=allow_unfinished), store=store, config=config,
                    baselines=baselines, dataset=dataset, allow_unfinished=allow_unfinished)
