"""The evaluations' result files: the one place that writes them and reads them back.

A results folder (the main job's ``WORK/results/``, ``musicrep report``'s
``REPORT/results/``) holds ``holdout.json`` (Table 1), ``transfer-<name>.json``
(Table 2, one per store), ``maps.json`` (t-SNE maps) and ``retrieval.json``; the
report (:mod:`musicrep.report.write`) only reads them (:func:`read_results`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from ..config import settings_digest
from ..data.store import FeatureStore, open_store
from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_json
from ..training.checkpoint import unfinished_message, unfinished_run
from .holdout import HoldoutResult, holdout_runs
from .maps import EmbeddingMap, embedding_maps
from .retrieval import RetrievalResult, retrieval_runs
from .runs import run_store_path
from .sweep import SweepResult, load_sweep
from .transfer import BASELINES, TransferConfig, TransferResult, transfer_runs

log = logging.getLogger(__name__)

HOLDOUT_FILE = "holdout.json"
MAPS_FILE = "maps.json"
RETRIEVAL_FILE = "retrieval.json"
#: What a results folder's files were made from (``musicrep report``: file -> settings hash).
SETTINGS_FILE = ".settings.json"


def transfer_file(name: str) -> str:
    """The file name of a transfer store's Table 2 row: ``transfer-<name>.json``."""
    return f"transfer-{name}.json"


# --------------------------------------------------------------------------- writers


def write_holdout(runs: Sequence[str | Path], *, store: FeatureStore | str | Path, path: Path, n_trials: int = 1000,
                  n_negatives: int = 4, seed: int = 0, allow_overlap: bool = False,
                  allow_unfinished: bool = False) -> None:
    """Table 1 (:func:`musicrep.evaluation.holdout.holdout_runs`) into ``path`` (``holdout.json``)."""
    result = holdout_runs(runs, store=store, n_trials=n_trials, n_negatives=n_negatives, seed=seed,
                          allow_overlap=allow_overlap, allow_unfinished=allow_unfinished)
    atomic_write_json(path, obj=result.to_dict())


def write_transfer(runs: Sequence[str | Path], *, store: FeatureStore | str | Path, path: Path,
                   config: TransferConfig, baselines: Sequence[str] = BASELINES,
                   allow_unfinished: bool = False) -> None:
    """One store's Table 2 row (:func:`musicrep.evaluation.transfer.transfer_runs`) into ``path``."""
    result = transfer_runs(runs, store=store, config=config, baselines=baselines, allow_unfinished=allow_unfinished)
    atomic_write_json(path, obj=result.to_dict())


def write_maps(runs: Sequence[str | Path], *, stores: Sequence[FeatureStore | str | Path], path: Path,
               max_points: int = 1500, seed: int = 0, allow_unfinished: bool = False) -> None:
    """The t-SNE maps (:func:`musicrep.evaluation.maps.embedding_maps`) into ``path``: ``[]`` for no runs or
    ``max_points`` 0."""
    maps = embedding_maps(runs, stores=stores, max_points=max_points, seed=seed, allow_unfinished=allow_unfinished) \
        if runs and max_points > 0 else []
    atomic_write_json(path, obj=[m.to_dict() for m in maps])


def write_retrieval(runs: Sequence[str | Path], *, store: FeatureStore | str | Path, path: Path,
                    seed: int = 0) -> None:
    """Same-artist / same-album retrieval (:func:`musicrep.evaluation.retrieval.retrieval_runs`) into ``path``."""
    retrieval_runs(runs, store=store, out=path, seed=seed)


# --------------------------------------------------------------------------- readers


@dataclasses.dataclass
class Results:
    """What a report renders, read back from result files (None / empty: not there)."""

    holdout: HoldoutResult | None = None
    transfers: list[TransferResult] = dataclasses.field(default_factory=list)
    maps: list[EmbeddingMap] = dataclasses.field(default_factory=list)
    retrieval: RetrievalResult | None = None
    sweeps: list[SweepResult] = dataclasses.field(default_factory=list)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_results(results_dir: str | Path, *, transfer_files: Sequence[str | Path] = (),
                 sweep_dirs: Sequence[str | Path] = ()) -> Results:
    """The result files of ``results_dir`` (those present), the given transfer files and sweep folders.

    Parameters
    ----------
    results_dir : the folder of ``holdout.json``, ``maps.json`` and ``retrieval.json``
    transfer_files : ``transfer-<name>.json`` files, in the order of Table 2's rows (each must exist)
    sweep_dirs : sweep folders (:func:`musicrep.evaluation.sweep.load_sweep`: finished points only)
    """
    folder = Path(results_dir)
    holdout, maps, retrieval = folder / HOLDOUT_FILE, folder / MAPS_FILE, folder / RETRIEVAL_FILE
    return Results(
        holdout=HoldoutResult.from_dict(_read_json(holdout)) if holdout.is_file() else None,
        transfers=[TransferResult.from_dict(_read_json(Path(p))) for p in transfer_files],
        maps=[EmbeddingMap.from_dict(m) for m in _read_json(maps)] if maps.is_file() else [],
        retrieval=RetrievalResult.from_dict(_read_json(retrieval)) if retrieval.is_file() else None,
        sweeps=[load_sweep(d) for d in sweep_dirs],
    )


# --------------------------------------------------------------------------- musicrep report


class _Made:
    """Which files of a results folder were made with which settings (``.settings.json``).

    A file counts as missing when it is absent or was made with other settings
    (other runs, checkpoints, stores or options): ``musicrep report`` then makes it again.
    """

    def __init__(self, folder: Path):
        self.path = folder / SETTINGS_FILE
        self.digests: dict[str, str] = _read_json(self.path) if self.path.is_file() else {}

    def missing(self, file: Path, settings: Any) -> bool:
        return not file.is_file() or self.digests.get(file.name) != settings_digest(settings)

    def record(self, file: Path, settings: Any) -> None:
        self.digests[file.name] = settings_digest(settings)
        atomic_write_json(self.path, obj=self.digests)


def _fingerprint(folder: str | Path) -> list:
    """A folder's path and its files' names, sizes and modification times (a retrained run or
    re-prepared store differs)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return [str(folder.resolve()), [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]]


def _transfer_names(stores: Sequence[str | Path]) -> list[str]:
    """One file name per transfer store: its folder name, numbered when two stores share one."""
    names: list[str] = []
    for s in stores:
        name = Path(s).name
        names.append(name if name not in names else f"{name}-{len(names) + 1}")
    return names


def _refuse_unfinished(runs: Sequence[Path], *, allow_unfinished: bool) -> None:
    """A run whose training did not finish is refused (before minutes of trials, not after)."""
    unfinished = [r for r in runs if unfinished_run(r) is not None]
    if unfinished and not allow_unfinished:
        raise CheckpointError(unfinished_message(unfinished_run(unfinished[0])))


def produce_results(
    runs: Sequence[str | Path],
    *,
    results_dir: str | Path,
    store: str | Path | None = None,
    transfer_stores: Sequence[str | Path] = (),
    n_trials: int = 1000,
    n_negatives: int = 4,
    transfer_config: TransferConfig | None = None,
    baselines: Sequence[str] | None = None,
    map_points: int = 1500,
    seed: int = 0,
    allow_overlap: bool = False,
    allow_unfinished: bool = False,
) -> list[Path]:
    """Make the result files ``musicrep report`` renders that ``results_dir`` lacks: hold-out, transfer per store, maps.

    A file made earlier with the same runs, stores and settings is kept (see :class:`_Made`).

    Parameters
    ----------
    runs : run folders; the first joint run (else the first run) draws the maps
    results_dir : where the files go (created)
    store : the store the runs trained on (for hold-out and the artist map); by
        default the one named in the first run's config
    transfer_stores : genre-labelled stores for Table 2
    n_trials, n_negatives, allow_overlap : hold-out settings (:func:`musicrep.evaluation.holdout.holdout_runs`)
    transfer_config, baselines : Table 2 settings (defaults: TransferConfig(), all baselines)
    map_points : songs in each t-SNE map (0: no maps)
    seed : seed of the hold-out trials and the maps
    allow_unfinished : use runs whose training did not finish (no ``DONE``); refused otherwise

    Returns
    -------
    list[Path]
        the ``transfer-<name>.json`` files, in the order of ``transfer_stores``
    """
    runs = [Path(r) for r in runs]
    _refuse_unfinished(runs, allow_unfinished=allow_unfinished)
    if store is None and runs:
        store = run_store_path(runs[0])
    if runs and store is None:
        raise ConfigError(f"{runs[0]}: its config names no store; pass --store STORE")
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    made = _Made(folder)
    base = {"runs": [_fingerprint(r) for r in runs], "allow_unfinished": allow_unfinished}
    fs = open_store(store) if runs else None
    if fs is not None:
        _holdout_file(made, folder / HOLDOUT_FILE, runs, store=fs, base=base, n_trials=n_trials,
                      n_negatives=n_negatives, seed=seed, allow_overlap=allow_overlap)
    else:  # no runs, no Table 1: not one left by an earlier report into this folder
        (folder / HOLDOUT_FILE).unlink(missing_ok=True)
    paths = _transfer_files(made, folder, runs, transfer_stores=transfer_stores, base=base,
                            config=transfer_config or TransferConfig(),
                            baselines=tuple(BASELINES if baselines is None else baselines))
    _maps_file(made, folder / MAPS_FILE, runs, stores=([fs] if fs is not None else []) + list(transfer_stores),
               base=base, map_points=map_points, seed=seed)
    return paths


def _transfer_files(made: _Made, folder: Path, runs: Sequence[Path], *, transfer_stores: Sequence[str | Path],
                    base: dict, config: TransferConfig, baselines: tuple[str, ...]) -> list[Path]:
    """``transfer-<name>.json`` per store unless made earlier with these settings; their paths in store order."""
    paths = [folder / transfer_file(name) for name in _transfer_names(transfer_stores)]
    for t, path in zip(transfer_stores, paths):
        settings = {**base, "store": _fingerprint(t), "config": dataclasses.asdict(config), "baselines": baselines}
        if made.missing(path, settings):
            write_transfer(runs, store=t, path=path, config=config, baselines=baselines,
                           allow_unfinished=bool(base["allow_unfinished"]))
            made.record(path, settings)
    return paths


def _maps_file(made: _Made, path: Path, runs: Sequence[Path], *, stores: Sequence[FeatureStore | str | Path],
               base: dict, map_points: int, seed: int) -> None:
    """``maps.json`` unless made earlier with these runs, stores and settings."""
    settings = {**base, "stores": [_fingerprint(s.path if isinstance(s, FeatureStore) else s) for s in stores],
                "map_points": map_points, "seed": seed}
    if made.missing(path, settings):
        write_maps(runs, stores=stores, path=path, max_points=map_points, seed=seed,
                   allow_unfinished=bool(base["allow_unfinished"]))
        made.record(path, settings)


def _holdout_file(made: _Made, path: Path, runs: Sequence[Path], *, store: FeatureStore, base: dict, n_trials: int,
                  n_negatives: int, seed: int, allow_overlap: bool) -> None:
    """``holdout.json`` unless made earlier with these settings."""
    settings = {**base, "store": _fingerprint(store.path), "n_trials": n_trials, "n_negatives": n_negatives,
                "seed": seed, "allow_overlap": allow_overlap}
    if made.missing(path, settings):
        write_holdout(runs, store=store, path=path, n_trials=n_trials, n_negatives=n_negatives, seed=seed,
                      allow_overlap=allow_overlap, allow_unfinished=bool(base["allow_unfinished"]))
        made.record(path, settings)
