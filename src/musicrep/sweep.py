"""Ablation sweeps: the paper's Table 3 (number of negatives) and Table 4 (number of artists).

For each value, a joint model is trained with that one setting changed (through
:func:`musicrep.train.train`) and put through the transfer test (and, by default,
the hold-out test). Layout of ``SWEEP/``::

    sweep.json                 what the sweep varies and its fixed settings
    negatives-4/run/           the training run of the point (resumable by train)
    negatives-4/result.json    the point's numbers, written atomically
    negatives-4/DONE           written last: a rerun skips this point

A killed sweep resumes: finished points are skipped, a half-trained run is
resumed by ``train(..., resume=True)``, and a run that finished training but not
evaluation is only evaluated. A point that fails (e.g. a collection with fewer
artists than asked for) is logged, left without ``DONE``, and the sweep goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import to_dict
from .errors import ConfigError, MusicrepError
from .io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

#: TrainConfig field names that a sweep kind varies, tried in order
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "negatives": ("negatives", "n_negatives", "num_negatives"),
    "artists": ("n_artists", "artists", "num_artists"),
}
KINDS: tuple[str, ...] = tuple(KIND_FIELDS)


@dataclasses.dataclass
class SweepPoint:
    """One finished (or failed) point; ``transfer`` = {"mean", "std", "accuracies"}."""

    value: int
    status: str
    run: str
    transfer: dict = dataclasses.field(default_factory=dict)
    holdout: dict = dataclasses.field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class SweepResult:
    """All points of a sweep, in the order of ``values``."""

    kind: str
    points: list[SweepPoint]
    dataset: str = ""
    path: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "SweepResult":
        return cls(kind=data["kind"], points=[SweepPoint(**p) for p in data["points"]],
                   dataset=data.get("dataset", ""), path=data.get("path", ""))

    @property
    def failed(self) -> list[SweepPoint]:
        return [p for p in self.points if p.status != "done"]

    def table(self) -> str:
        """Plain-text table: value, transfer accuracy, hold-out accuracies."""
        seen = {c for p in self.points for c in p.holdout}
        concepts = [c for c in ("artist", "album", "track") if c in seen] + sorted(seen - {"artist", "album", "track"})
        head = f"{self.kind:>10}" + f"{'transfer':>18}" + "".join(f"{c:>9}" for c in concepts)
        lines = [head]
        for p in self.points:
            if p.status != "done":
                lines.append(f"{p.value:>10}  failed: {p.error}")
                continue
            tr = f"{p.transfer['mean']:.3f} +- {p.transfer['std']:.3f}" if p.transfer else "-"
            lines.append(f"{p.value:>10}{tr:>18}" + "".join(f"{p.holdout.get(c, float('nan')):>9.3f}" for c in concepts))
        return "\n".join(lines)


def sweep_field(kind: str, config: Any) -> str:
    """The TrainConfig field a sweep of ``kind`` changes."""
    if kind not in KIND_FIELDS:
        raise ConfigError(f"sweep kind {kind!r} is not one of {list(KINDS)}")
    names = {f.name for f in dataclasses.fields(config)}
    for name in KIND_FIELDS[kind]:
        if name in names:
            return name
    raise ConfigError(f"{type(config).__name__} has no setting for the number of {kind} (looked for {KIND_FIELDS[kind]})")


def point_config(kind: str, value: int, base: Any) -> Any:
    """``base`` with the swept setting set to ``value``, trained jointly.

    (With ``n_albums`` unset, training uses twice as many albums as artists, as
    the paper's album split does.)
    """
    if value < 1:
        raise ConfigError(f"sweep value {value} must be a positive integer")
    changes: dict[str, Any] = {sweep_field(kind, base): value}
    names = {f.name for f in dataclasses.fields(base)}
    if "concept" in names:
        changes["concept"] = "joint"
    return dataclasses.replace(base, **changes)


def _default_train() -> Callable[..., Any]:
    from .train import train

    return train


def _default_config() -> Any:
    from .train import TrainConfig

    return TrainConfig()


def _check_manifest(out: Path, manifest: dict) -> None:
    import json

    path = out / "sweep.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        fixed = {k: v for k, v in manifest.items() if k != "values"}
        old_fixed = {k: v for k, v in old.items() if k != "values"}
        if fixed != old_fixed:
            diff = sorted(k for k in set(fixed) | set(old_fixed) if fixed.get(k) != old_fixed.get(k))
            raise ConfigError(
                f"{out} holds a sweep with other settings ({', '.join(diff)} differ); "
                "use another output folder to keep both"
            )
        manifest = {**manifest, "values": sorted(set(old.get("values", [])) | set(manifest["values"]))}
    atomic_write_json(path, manifest)


def run_sweep(
    *,
    kind: str,
    values: Sequence[int],
    store: str | Path,
    transfer_store: str | Path,
    out_dir: str | Path,
    train_config: Any = None,
    transfer_config: Any = None,
    holdout_trials: int = 1000,
    train_fn: Callable[..., Any] | None = None,
) -> SweepResult:
    """Train and evaluate one joint model per value; skip finished points.

    Parameters
    ----------
    kind : "negatives" (Table 3) or "artists" (Table 4)
    values : the settings to try, e.g. (1, 2, 4, 8, 16)
    store : feature store the models train on
    transfer_store : genre-labelled feature store for the transfer test
    out_dir : the sweep folder (see the module docstring)
    train_config : base :class:`musicrep.train.TrainConfig` (defaults otherwise)
    transfer_config : :class:`musicrep.transfer.TransferConfig` (defaults otherwise)
    holdout_trials : hold-out trials per concept per point; 0 skips the hold-out test
    train_fn : ``train(store_path, out_dir, config, *, resume)``; :func:`musicrep.train.train` by default

    Returns
    -------
    SweepResult with one point per value (failed points carry ``status="failed"``)
    """
    from .evaluate import holdout_runs
    from .transfer import TransferConfig, transfer

    if not values:
        raise ConfigError("a sweep needs at least one value")
    train_fn = train_fn or _default_train()
    base = train_config if train_config is not None else _default_config()
    tcfg = transfer_config if transfer_config is not None else TransferConfig()
    configs = {int(v): point_config(kind, int(v), base) for v in values}  # validates every value first
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, {
        "kind": kind, "field": sweep_field(kind, base), "values": sorted(configs),
        "store": str(Path(store).resolve()), "transfer_store": str(Path(transfer_store).resolve()),
        "train_config": to_dict(base), "transfer_config": to_dict(tcfg), "holdout_trials": holdout_trials,
    })
    points = []
    for value, config in configs.items():
        pdir = out / f"{kind}-{value}"
        if (pdir / "DONE").is_file() and (pdir / "result.json").is_file():
            log.info("%s=%d: finished earlier; skipped", kind, value)
            points.append(_read_point(pdir))
            continue
        run_dir = pdir / "run"
        t0 = time.perf_counter()
        try:
            if not (run_dir / "DONE").is_file():
                log.info("%s=%d: training a joint model in %s", kind, value, run_dir)
                train_fn(store, run_dir, config, resume=run_dir.exists())
            tr = transfer({"joint": run_dir}, store=transfer_store, config=tcfg, baselines=())
            res = tr.methods["joint"]
            point = SweepPoint(
                value=value, status="done", run=str(run_dir),
                transfer={"mean": res.accuracy_mean, "std": res.accuracy_std, "accuracies": res.accuracies,
                          "dataset": tr.dataset},
            )
            if holdout_trials > 0:
                ho = holdout_runs([run_dir], store=store, n_trials=holdout_trials)
                point.holdout = dict(ho.accuracy[ho.models[0]])
        except MusicrepError as exc:
            log.error("%s=%d failed: %s", kind, value, exc)
            points.append(SweepPoint(value=value, status="failed", run=str(run_dir), error=str(exc)))
            continue
        point.seconds = round(time.perf_counter() - t0, 1)
        atomic_write_json(pdir / "result.json", dataclasses.asdict(point))
        atomic_write_text(pdir / "DONE", f"{kind}={value}\n")  # written last
        points.append(point)
    return SweepResult(kind=kind, points=points, dataset=Path(transfer_store).name, path=str(out))


def _read_point(pdir: Path) -> SweepPoint:
    import json

    data = json.loads((pdir / "result.json").read_text(encoding="utf-8"))
    return SweepPoint(**{f.name: data[f.name] for f in dataclasses.fields(SweepPoint) if f.name in data})


def load_sweep(sweep_dir: str | Path) -> SweepResult:
    """The finished points of a sweep folder, in increasing value order."""
    import json

    out = Path(sweep_dir)
    manifest = out / "sweep.json"
    if not manifest.is_file():
        raise ConfigError(f"{out}: not a sweep folder (no sweep.json); run `musicrep sweep ... -o {out}`")
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    kind = meta["kind"]
    points = [_read_point(p.parent) for p in out.glob(f"{kind}-*/DONE") if (p.parent / "result.json").is_file()]
    points.sort(key=lambda p: p.value)
    return SweepResult(kind=kind, points=points, dataset=Path(meta.get("transfer_store", "")).name, path=str(out))
