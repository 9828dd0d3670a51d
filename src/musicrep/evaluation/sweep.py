"""Sweeps over one training setting: the paper's margin grid search and Tables 3-4.

A sweep trains one model per value of one setting (through
:func:`musicrep.training.train.train`), with every other setting fixed. The setting is
either a named kind (the paper's ablations ``negatives``: Table 3 and
``artists``: Table 4, i.e. the field ``n_artists``, and ``games``: the field
``n_games``, the built-in corpus's number of training games; all train joint
models unless told otherwise) or
the name of any :class:`musicrep.training.train.TrainConfig` field, e.g. ``margin_artist``
(the grid search behind the paper's margins 0.4 / 0.25 / 0.1), ``lr`` or
``width``. Values are parsed and range-checked like ``--set`` overrides, all of
them before anything trains.

Which concept trains: the ``concept`` argument when given; otherwise joint for
the legacy kinds, ``<c>`` for a ``margin_<c>`` sweep, and the base config's
concept for any other setting.

Each point records the validation figures of its run at the best checkpoint
(read from ``metrics.csv``), and, when asked, the hold-out test and the transfer
test. The sweep's :attr:`SweepResult.selected` value is chosen on validation
accuracy only: test figures are shown, never used to choose. Layout of ``SWEEP/``::

    sweep.json                     what the sweep varies and its fixed settings
    margin_artist-0.4/run/         the training run of the point (resumable by train)
    margin_artist-0.4/result.json  the point's numbers, written atomically
    margin_artist-0.4/DONE         written last: a rerun skips this point

(The folder prefix is the sweep's kind: ``negatives-4``, ``artists-500`` and
``games-14`` for the named kinds, as older sweeps wrote them.) Planning (:mod:`musicrep.evaluation.sweep_plan`) checks every value before
anything trains. A killed sweep resumes: finished
points are skipped, a half-trained run is resumed by ``train(..., resume=True)``,
and a run that finished training but not evaluation is only evaluated. A point
that fails (e.g. a collection with fewer artists than asked for) is logged, left
without ``DONE``, and the sweep goes on.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from ..concepts import ordered
from ..config import to_dict
from ..errors import ConfigError, MusicrepError
from ..io import atomic_write_json, atomic_write_text
from ..locks import folder_lock
from ..training import train as train_module
from ..training.settings import TrainConfig
from . import holdout
from .sweep_plan import (
    KIND_FIELDS,
    TASK_SETTINGS,
    SweepPlan,
    format_value,
    plan_sweep,
    value_order,
    write_manifest,
)
from .transfer import TransferConfig, transfer

log = logging.getLogger(__name__)

#: validation accuracies closer than this are a tie (the lower value is selected)
ACC_TIE = 1e-6

@dataclasses.dataclass
class SweepPoint:
    """One finished (or failed) point.

    ``value`` is the swept setting's value (int, float, str, bool or None);
    ``validation`` = {"epoch", "monitor", "valid_loss", "valid_acc", "valid_loss_<c>",
    "valid_acc_<c>"...} at the run's best checkpoint; ``transfers`` = transfer
    dataset -> {"mean", "std", "accuracies", "ci95_low", "ci95_high", "n_trials",
    "dataset", "warnings"} (the :class:`musicrep.evaluation.probe.ProbeResult` of the
    point's model and the transfer overlap warnings; empty without a transfer store;
    points written before the interval and warnings were kept lack those keys) and
    ``transfer`` the first dataset's (as points written before several targets);
    ``holdout`` = test accuracy per concept (empty when skipped).
    """

    value: Any
    status: str
    run: str
    transfer: dict = dataclasses.field(default_factory=dict)
    holdout: dict = dataclasses.field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    validation: dict = dataclasses.field(default_factory=dict)
    concept: str = ""
    transfers: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.transfer and not self.transfers:  # made (or written) with one transfer target
            self.transfers = {self.transfer.get("dataset", ""): self.transfer}

    @classmethod
    def from_dict(cls, data: Mapping) -> "SweepPoint":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass
class SweepResult:
    """All points of a sweep, in the order of ``values`` (``load_sweep``: increasing value)."""

    kind: str
    points: list[SweepPoint]
    dataset: str = ""
    path: str = ""
    field: str = ""
    concept: str = ""
    seed: int = 0  # the training seed of every point (it draws the splits)

    def __post_init__(self) -> None:
        for p in self.points:  # a point with one unnamed transfer target: this sweep's dataset
            if "" in p.transfers and self.dataset:
                p.transfers = {self.dataset: p.transfers[""], **{k: v for k, v in p.transfers.items() if k}}

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "selected": self.selected}

    @classmethod
    def from_dict(cls, data: Mapping) -> "SweepResult":
        return cls(kind=data["kind"], points=[SweepPoint.from_dict(p) for p in data["points"]],
                   dataset=data.get("dataset", ""), path=data.get("path", ""),
                   field=data.get("field", ""), concept=data.get("concept", ""), seed=data.get("seed", 0))

    @property
    def datasets(self) -> list[str]:
        """The transfer datasets of the points, first seen first."""
        return list(dict.fromkeys(name for p in self.points for name in p.transfers))

    def warnings(self) -> list[str]:
        """The transfer warnings of every point (e.g. transfer songs the encoder trained on), one line each."""
        return [f"{self.field or self.kind}={format_value(p.value)}: {w}"
                for p in self.points for tr in p.transfers.values() for w in tr.get("warnings", [])]

    @property
    def failed(self) -> list[SweepPoint]:
        return [p for p in self.points if p.status != "done"]

    @property
    def selected_point(self) -> SweepPoint | None:
        """The finished point with the highest validation accuracy (ties: the lower value).

        None when the swept setting changes the validation task itself (see
        :data:`TASK_SETTINGS`: with N negatives chance is 1 / (N + 1), and other
        split settings change the validation songs), since the accuracies of such
        points are not on one scale.

        Chosen on validation accuracy, not validation loss: the hinge loss
        ``max(0, margin - cos(a, p) + cos(a, n))`` grows with the margin, so
        losses of runs with different margins (or negatives, or reductions) are not
        on one scale, while accuracy (does the positive beat every negative?) is.
        Test figures (hold-out, transfer) are never looked at.
        """
        if not self.selectable:
            return None
        best: SweepPoint | None = None
        for p in sorted(self.points, key=lambda p: value_order(p.value)):
            acc = p.validation.get("valid_acc") if p.status == "done" else None
            if acc is None or not math.isfinite(acc):
                continue
            # equal counts of correct anchors can differ in the last float bits (sums of batch means)
            if best is None or acc > best.validation["valid_acc"] + ACC_TIE:
                best = p
        return best

    @property
    def selectable(self) -> bool:
        """Whether validation accuracy can compare this sweep's points (see :data:`TASK_SETTINGS`)."""
        field = self.field or KIND_FIELDS.get(self.kind, (self.kind,))[0]
        return field not in TASK_SETTINGS

    @property
    def selected(self) -> Any:
        """The selected value (see :attr:`selected_point`); None when no point has validation figures."""
        p = self.selected_point
        return None if p is None else p.value

    def table(self) -> str:
        """Plain-text table: value, validation accuracy at the best epoch, transfer, hold-out.

        One transfer column per target (``transfer`` with one, ``transfer_<name>`` with
        several). The selected row is marked ``*``; the test columns are for reading,
        not choosing.
        """
        seen = {c for p in self.points for c in p.holdout}
        concepts = ordered(seen)
        targets = self.datasets
        tr_head = ["transfer"] if len(targets) == 1 else [f"transfer_{d}" for d in targets]
        head = ["", self.kind, "valid_acc", "epoch"] + tr_head + [f"holdout_{c}" for c in concepts]
        chosen = self.selected_point
        rows, failed = [], {}
        for p in self.points:
            mark = "*" if p is chosen else ""
            v = p.validation
            row = [mark, format_value(p.value), _num(v.get("valid_acc")), str(v.get("epoch", "-"))]
            for d in targets:
                t = p.transfers.get(d)
                row.append(f"{t['mean']:.3f}+-{t['std']:.3f}" if t else "-")
            rows.append(row + [_num(p.holdout.get(c)) for c in concepts])
            if p.status != "done":
                failed[len(rows) - 1] = f"failed: {p.error}"
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

        def fmt(cells: list[str]) -> str:
            return " ".join([f"{cells[0]:<{widths[0]}}"] + [f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:])])

        lines = [fmt(head)] + [fmt(r[:2]) + f"  {failed[k]}" if k in failed else fmt(r) for k, r in enumerate(rows)]
        return "\n".join(line.rstrip() for line in lines)


def _num(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def read_validation(run_dir: str | Path, *, monitor: str = "valid_loss") -> dict:
    """Validation figures of a run at its best checkpoint.

    The best epoch is the first row of ``metrics.csv`` with the lowest
    ``valid_loss`` (monitor ``valid_loss``) or the highest ``valid_acc`` (monitor
    ``valid_acc``), as training picks ``best.pt``; the monitor comes from the run's
    ``config.yaml`` (``monitor`` if it has none). Returns {} without a metrics.csv.
    """
    run = Path(run_dir)
    cfg = run / "config.yaml"
    if cfg.is_file():
        monitor = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("monitor", monitor)
    path = run / "metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [{k: _float(v) for k, v in r.items() if k == "epoch" or k.startswith("valid_")}
                for r in csv.DictReader(fh)]
    sign = -1.0 if monitor == "valid_acc" else 1.0  # the monitor is minimised as sign * value
    rows = [r for r in rows if math.isfinite(r.get(monitor, math.nan))]
    if not rows:
        return {}
    best = min(rows, key=lambda r: sign * r[monitor])  # min keeps the first of equal rows
    return {"epoch": int(best["epoch"]), "monitor": monitor, **{k: v for k, v in best.items() if k != "epoch"}}


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def run_sweep(
    *,
    kind: str,
    values: Sequence[Any],
    store: str | Path,
    transfer_store: str | Path | Mapping[str, str | Path] | Sequence[str | Path] | None = None,
    out_dir: str | Path,
    train_config: TrainConfig | None = None,
    transfer_config: TransferConfig | None = None,
    holdout_trials: int = 1000,
    train_fn: Callable[..., Any] | None = None,
    concept: str | None = None,
) -> SweepResult:
    """Train and evaluate one model per value; skip finished points.

    Parameters
    ----------
    kind : "negatives" (Table 3), "artists" (Table 4), "games" (n_games), or any TrainConfig field
        name, e.g. "margin_artist" (the paper's margin grid search)
    values : the settings to try, e.g. (1, 2, 4, 8, 16) or ("0.1", "0.2"); parsed
        and range-checked with the field's type, all before anything trains
    store : feature store the models train on
    transfer_store : genre-labelled feature store for the transfer test, or several
        (name -> store, or a list named by folder; each point is tested on each); None
        or an empty list skips it
    out_dir : the sweep folder (see the module docstring)
    train_config : base :class:`musicrep.training.settings.TrainConfig` (defaults otherwise)
    transfer_config : :class:`musicrep.evaluation.transfer.TransferConfig` (defaults otherwise)
    holdout_trials : hold-out trials per concept per point; 0 skips the hold-out test
    train_fn : ``train(store_path, *, out_dir, config, resume)``; :func:`musicrep.training.train.train` by default
    concept : the concept to train, overriding the sweep's default
        (see :func:`musicrep.evaluation.sweep_plan.sweep_concept`)

    Returns
    -------
    SweepResult with one point per value (failed points carry ``status="failed"``);
    ``result.selected`` is the value with the best validation accuracy
    """
    if not values:
        raise ConfigError("a sweep needs at least one value")
    train_fn = train_fn or train_module.train  # looked up now, so a replaced train_module.train is the one used
    base = train_config if train_config is not None else TrainConfig()
    plan = plan_sweep(kind, values=values, base=base, concept=concept)  # validates every value first
    tcfg = None
    targets = transfer_targets(transfer_store)
    if targets:
        tcfg = transfer_config if transfer_config is not None else TransferConfig()
    out = Path(out_dir)
    with folder_lock(out):  # one sweep per folder: two would train the same points
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out, manifest={
            "kind": kind, "field": plan.field, "concept": plan.concept, "values": plan.values,
            "store": str(Path(store).resolve()),
            "transfer_store": str(Path(next(iter(targets.values()))).resolve()) if targets else None,
            "transfer_stores": {name: str(Path(path).resolve()) for name, path in targets.items()},
            "train_config": to_dict(base), "transfer_config": to_dict(tcfg) if tcfg is not None else None,
            "holdout_trials": holdout_trials,
        })
        tests = _PointTests(store=store, transfer_stores=targets, transfer_config=tcfg,
                            holdout_trials=holdout_trials)
        points = [_run_point(out / name, value=value, config=config, plan=plan, store=store, train_fn=train_fn,
                             tests=tests) for name, (value, config) in plan.points.items()]
        return SweepResult(kind=kind, points=points, dataset=next(iter(targets), ""), path=str(out),
                           field=plan.field, concept=plan.concept or "", seed=base.seed)


def transfer_targets(
    transfer_store: str | Path | Mapping[str, str | Path] | Sequence[str | Path] | None,
) -> dict[str, str | Path]:
    """Transfer stores by name: a mapping as given; a store, or a list of them, named by
    folder (two of one folder name are refused: the tables name targets by it)."""
    if transfer_store is None:
        return {}
    if isinstance(transfer_store, Mapping):
        return dict(transfer_store)
    paths = [transfer_store] if isinstance(transfer_store, (str, Path)) else list(transfer_store)
    named = {Path(p).name: p for p in paths}
    if len(named) < len(paths):
        raise ConfigError("transfer stores: two share a folder name; the tables name targets by it")
    return named


@dataclasses.dataclass(frozen=True)
class _PointTests:
    """The test figures each point gets (reported, never used to select)."""

    store: str | Path
    transfer_stores: Mapping[str, str | Path]
    transfer_config: TransferConfig | None
    holdout_trials: int


def _run_point(pdir: Path, *, value: Any, config: TrainConfig, plan: SweepPlan, store: str | Path,
               train_fn: Callable[..., Any], tests: _PointTests) -> SweepPoint:
    """One point: read back when finished earlier, else train (or resume) and test it;
    ``result.json`` then ``DONE`` are written last. A failure is logged and returned as a failed point."""
    label = f"{plan.field}={format_value(value)}"
    if (pdir / "DONE").is_file() and (pdir / "result.json").is_file():
        log.info("%s: finished earlier; skipped", label)
        return _read_point(pdir)
    run_dir = pdir / "run"
    point_concept = getattr(config, "concept", plan.concept) or "model"
    t0 = time.perf_counter()
    try:
        if not (run_dir / "DONE").is_file():
            log.info("%s: training a %s model in %s", label, point_concept, run_dir)
            train_fn(store, out_dir=run_dir, config=config, resume=run_dir.exists())
        point = SweepPoint(value=value, status="done", run=str(run_dir), concept=point_concept,
                           validation=read_validation(run_dir, monitor=getattr(config, "monitor", "valid_loss")))
        _test_point(point, tests=tests)
    except MusicrepError as exc:
        log.error("%s failed: %s", label, exc)
        return SweepPoint(value=value, status="failed", run=str(run_dir), error=str(exc), concept=point_concept)
    point.seconds = round(time.perf_counter() - t0, 1)
    atomic_write_json(pdir / "result.json", obj=dataclasses.asdict(point))
    atomic_write_text(pdir / "DONE", text=f"{label}\n")  # written last
    return point


def _test_point(point: SweepPoint, *, tests: _PointTests) -> None:
    """Fill ``point.transfer`` and ``point.holdout`` (test figures: reported, never used to select)."""
    for name, store in tests.transfer_stores.items():
        # the model is named by its concept, as transfer tables name runs
        tr = transfer({point.concept: Path(point.run)}, store=store, config=tests.transfer_config, baselines=())
        res = tr.methods[point.concept]
        point.transfers[name] = {"mean": res.accuracy_mean, "std": res.accuracy_std, "accuracies": res.accuracies,
                                 "ci95_low": res.ci95_low, "ci95_high": res.ci95_high, "n_trials": res.n_trials,
                                 "dataset": tr.dataset, "warnings": list(tr.warnings)}
    point.transfer = next(iter(point.transfers.values()), {})
    if tests.holdout_trials > 0:
        # looked up at call time: the hold-out test of the module as it is now
        ho = holdout.holdout_runs([Path(point.run)], store=tests.store, n_trials=tests.holdout_trials)
        point.holdout = dict(ho.accuracy[ho.models[0]])


def _read_point(pdir: Path) -> SweepPoint:
    point = SweepPoint.from_dict(json.loads((pdir / "result.json").read_text(encoding="utf-8")))
    if point.status == "done" and not point.validation:  # written before validation was recorded
        point.validation = read_validation(pdir / "run")
    return point


def load_sweep(sweep_dir: str | Path) -> SweepResult:
    """The finished points of a sweep folder, in increasing value order."""
    out = Path(sweep_dir)
    manifest = out / "sweep.json"
    if not manifest.is_file():
        raise ConfigError(f"{out}: not a sweep folder (no sweep.json); run `musicrep sweep ... -o {out}`")
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    kind = meta["kind"]
    points = [_read_point(p.parent) for p in out.glob(f"{kind}-*/DONE") if (p.parent / "result.json").is_file()]
    points.sort(key=lambda p: value_order(p.value))
    concept = meta.get("concept") or ("joint" if kind in KIND_FIELDS else "")
    dataset = next(iter(meta.get("transfer_stores") or {}), "") or (
        Path(meta["transfer_store"]).name if meta.get("transfer_store") else "")
    return SweepResult(kind=kind, points=points, dataset=dataset, path=str(out), field=meta.get("field", ""),
                       concept=concept, seed=int((meta.get("train_config") or {}).get("seed", 0)))
