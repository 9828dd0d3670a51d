"""The main job: from nothing to the paper's tables, on the built-in real corpus or
on the user's own catalogs.

``musicrep run --profile default -o WORK`` runs these stages, each skipped when
its marker says it finished (so a rerun resumes after the last finished stage,
and the stages themselves resume inside: prepare per track, training per epoch)::

    corpus    build the metadata-training corpus (game soundtracks) and the
              transfer corpus (folk tunes, label = tune type)       -> WORK/corpus/
    prepare   log-mel feature stores for both                       -> WORK/stores/
    train     artist, album, track and joint models                 -> WORK/runs/
    holdout   Table 1: every model on every concept                 -> WORK/results/holdout.json
    retrieval same-artist / same-album songs among nearest neighbours
              (mAP, P@10) of every model, their concatenation and
              baselines, on the held-out songs                      -> WORK/results/retrieval.json
    transfer  Table 2: linear probe with the baselines              -> WORK/results/transfer-<corpus>.json
    maps      t-SNE maps of the joint model                         -> WORK/results/maps.json
    sweeps    Tables 3 and 4, when the profile asks for them        -> WORK/sweeps/{negatives,artists}/
    report    renders the result files: tables, curves, figures     -> WORK/report/
    model     the joint model and its card, as the package ships it -> WORK/model/

``musicrep run --profile paper --train-catalog msd.csv --transfer-catalog gtzan.csv
--transfer-catalog fma_small.csv`` runs the same stages at the paper's scale on the
user's data: no corpus stage, one store and one Table 2 row per catalog, and the
negatives (1..16 at 1,000 artists) and artists (500..10,000) sweeps.

The evaluations write result files once; the report only renders them. Each
stage's marker records the hash of the settings it ran with: after a change of
settings the stage (and every stage after it) runs again instead of being
skipped. Wall time per stage goes to ``WORK/timings.json`` and into the report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from .concepts import JOINT, PAPER_CONCEPTS, check_concept
from .config import load_config, save_config, settings_digest, to_dict
from .data.catalog import read_csv
from .data.corpus import build_corpus
from .data.prepare import prepare
from .errors import ConfigError
from .io import atomic_write_json
from .locks import folder_lock
from .training.profiles import profile_settings

if TYPE_CHECKING:
    from .evaluation.transfer import TransferConfig
    from .training.settings import TrainConfig

# Deferred imports: the modules that import torch (training, the evaluations, the
# report, the packaged model) are imported inside the functions that use them, each
# marked "deferred: torch": `musicrep --help` imports this module for PROFILES.

log = logging.getLogger(__name__)
_Settings = TypeVar("_Settings")

CONCEPTS = (*PAPER_CONCEPTS, JOINT)  # the main job's four models


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Settings of the main job. ``train`` and ``transfer`` are ``--set``-able groups."""

    train_corpus: str = "games"
    transfer_corpus: str = "folk"
    concepts: tuple[str, ...] = CONCEPTS
    workers: int = dataclasses.field(default=2, metadata={"min": 1})
    seed: int = 0
    n_trials: int = dataclasses.field(default=1000, metadata={"min": 1})
    map_points: int = dataclasses.field(default=1500, metadata={"min": 0})
    # The user's data instead of the built-in corpora (the paper profile needs them):
    # a catalog CSV to train on (e.g. `musicrep catalog msd ...`), and genre-labelled
    # catalog CSVs for Table 2 (`musicrep catalog gtzan ... --splits`, `catalog fma`).
    train_catalog: str = ""
    transfer_catalogs: tuple[str, ...] = ()
    # Table 3 (negatives per point, joint models on sweep_negatives_artists artists)
    # and Table 4 (training artists per point); empty: not run.
    sweep_negatives: tuple[int, ...] = ()
    sweep_negatives_artists: int | None = dataclasses.field(default=None, metadata={"min": 2})
    sweep_artists: tuple[int, ...] = ()
    # TrainConfig settings applied to every model (key -> value), e.g. epochs.
    train: dict = dataclasses.field(default_factory=dict)
    # TransferConfig settings for Table 2.
    transfer: dict = dataclasses.field(default_factory=dict)


#: CPU-sized settings. The paper's are in TrainConfig's defaults (5000 artists,
#: 20 songs per artist, 100s of epochs on a GPU); these fit 2 cores.
PROFILES: dict[str, dict] = {
    "default": {
        "train_corpus": "games",
        "transfer_corpus": "folk",
        # the `cpu` training profile (musicrep/configs/cpu.yaml), which says why each differs
        "train": profile_settings("cpu"),
        "transfer": {"cnn_steps": 600},
    },
    # The paper's scale on the user's data: TrainConfig's defaults are the paper's
    # (width 256, 20 songs per artist 16/2/2, 10 per album 8/1/1, margins 0.4 / 0.25 /
    # 0.1, 4 negatives, batch 15, 100 x 500 steps); 5,000 artists and 10,000 albums;
    # Table 3 at 1,000 artists, Table 4 from 500 to 10,000 artists. A GPU job.
    "paper": {
        "train_corpus": "",
        "transfer_corpus": "",
        "train": {"n_artists": 5000, "n_albums": 10000},
        "sweep_negatives": [1, 2, 4, 8, 16],
        "sweep_negatives_artists": 1000,
        "sweep_artists": [500, 1000, 2000, 5000, 10000],
    },
    "quick": {
        "train_corpus": "games-mini",
        "transfer_corpus": "folk-mini",
        "n_trials": 300,
        "map_points": 400,
        "train": {
            "width": 64, "batch_size": 15, "epochs": 3, "steps_per_epoch": 25, "valid_batches": 4,
            "patience": 3, "songs_per_artist": 5, "artist_valid": 1, "artist_test": 1,
            "songs_per_album": 5, "album_valid": 1, "album_test": 1,
        },
        "transfer": {"seeds": [0, 1, 2], "cnn_trials": 1, "cnn_steps": 150},
    },
}


def profile_config(profile: str, *, config_file: str | Path | None = None, overrides: tuple[str, ...] = ()) -> PipelineConfig:
    """The settings of a named profile, then a YAML file, then ``key=value`` overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    base = load_config(PipelineConfig, path=None, overrides=[], base=None)
    base = dataclasses.replace(base, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in PROFILES[profile].items()})
    config = load_config(PipelineConfig, path=config_file, overrides=overrides, base=base)
    for c in config.concepts:  # the paper's models, or a model of any catalog column (label, ...)
        if c != JOINT:
            check_concept(c)
    if not config.train_catalog and not config.train_corpus:
        raise ConfigError(f"profile {profile!r} trains on your catalog: give --train-catalog CSV (e.g. made by "
                          "`musicrep catalog msd track_metadata.db audio/ -o msd.csv`)")
    if not config.transfer_catalogs and not config.transfer_corpus:
        raise ConfigError(f"profile {profile!r} transfers to your genre catalogs: give --transfer-catalog CSV "
                          "(e.g. `musicrep catalog gtzan gtzan/ --splits SPLITS -o gtzan.csv`), once per dataset")
    for path in ((config.train_catalog,) if config.train_catalog else ()) + tuple(config.transfer_catalogs):
        if not Path(path).is_file():
            raise ConfigError(f"{path}: catalog file not found")
    # Validate the nested groups now rather than an hour into the job.
    _train_config("artist", config)
    _transfer_config(config)
    return config


def _group_config(cls: type[_Settings], settings: dict, group: str) -> _Settings:
    """A settings dataclass from one ``--set``-able group of the pipeline's settings."""
    try:
        return load_config(cls, path=None, overrides=[f"{k}={json.dumps(v)}" for k, v in settings.items()])
    except ConfigError as exc:
        raise ConfigError(f"{group}.*: {exc}") from None


def _train_config(concept: str, config: PipelineConfig) -> TrainConfig:
    # deferred: torch
    from .training.settings import TrainConfig

    return _group_config(TrainConfig, {**config.train, "concept": concept, "seed": config.seed}, "train")


def _transfer_config(config: PipelineConfig) -> TransferConfig:
    # deferred: torch
    from .evaluation.transfer import TransferConfig

    return _group_config(TransferConfig, config.transfer, "transfer")


class Stages:
    """Markers and wall times of the pipeline's stages under ``WORK/``.

    A stage is skipped when its marker exists *and* records the same settings
    hash as now; once a stage runs again, so does every later stage (their
    inputs may have changed).
    """

    def __init__(self, work: Path):
        self.work = work
        self.marks = work / ".stages"
        self.marks.mkdir(parents=True, exist_ok=True)
        self.timings_path = work / "timings.json"
        self.timings: dict[str, float] = json.loads(self.timings_path.read_text()) if self.timings_path.exists() else {}
        self._rerun_from_here = False

    def run(self, name: str, fn: Callable[[], object], *, settings: object = None) -> None:
        mark = self.marks / f"{name}.done"
        digest = settings_digest(settings)
        if mark.exists() and not self._rerun_from_here:
            recorded = json.loads(mark.read_text(encoding="utf-8")).get("settings")
            if recorded == digest:
                log.info("stage %s: done earlier (%.0f s); skipped", name, self.timings.get(name, float("nan")))
                return
            log.warning("stage %s: its settings changed since it ran; running it (and the stages after it) again",
                        name)
        self._rerun_from_here = self._rerun_from_here or mark.exists()
        mark.unlink(missing_ok=True)
        log.info("stage %s: starting", name)
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        self.timings[name] = round(elapsed, 1)
        atomic_write_json(self.timings_path, obj=self.timings)
        atomic_write_json(mark, obj={"seconds": self.timings[name], "settings": digest})
        log.info("stage %s: finished in %.0f s", name, elapsed)


def run_pipeline(out_dir: str | Path, *, config: PipelineConfig) -> Path:
    """Run (or resume) the main job into ``out_dir``; return the report folder."""
    work = Path(out_dir)
    with folder_lock(work):  # one main job per work folder; its stages lock their own folders too
        return _run_stages(work, config)


def _run_stages(work: Path, config: PipelineConfig) -> Path:
    # deferred: torch
    from .evaluation import results as res

    work.mkdir(parents=True, exist_ok=True)
    save_config(config, path=work / "pipeline.yaml")
    stages = Stages(work)
    results = work / "results"
    train_store = _data(work, stages, config, role="train")
    transfer_stores = _data(work, stages, config, role="transfer")
    runs = _train_runs(work, stages, config, store=train_store)
    stages.run("holdout", lambda: res.write_holdout(runs, store=train_store, path=results / res.HOLDOUT_FILE,
                                                    n_trials=config.n_trials, seed=config.seed),
               settings={"runs": config.concepts, "n_trials": config.n_trials, "seed": config.seed})
    retrieval = _retrieval_settings(config)
    # retrieval embeds only the held-out songs: nothing cached
    stages.run("retrieval", lambda: res.write_retrieval(runs, store=train_store, path=results / res.RETRIEVAL_FILE,
                                                        seed=config.seed),
               settings=retrieval)
    transfer_jsons = []
    for name, store in transfer_stores.items():
        transfer_jsons.append(results / res.transfer_file(name))
        stages.run(f"transfer-{name}", lambda store=store, path=transfer_jsons[-1]: res.write_transfer(
            runs, store=store, path=path, config=_transfer_config(config)),
            settings=to_dict(_transfer_config(config)))
    stages.run("maps", lambda: res.write_maps(runs, stores=[train_store, *transfer_stores.values()],
                                              path=results / res.MAPS_FILE, max_points=config.map_points,
                                              seed=config.seed),
               settings={"map_points": config.map_points, "seed": config.seed})
    sweeps = _sweeps(work, stages, config, store=train_store, transfer_store=next(iter(transfer_stores.values())))
    report_dir = work / "report"
    # the retrieval settings too: a work folder made before the retrieval stage renders its report again
    stages.run("report", lambda: _report(runs, report_dir, results, transfer_jsons, sweeps, config, stages),
               settings={**to_dict(config), "retrieval": retrieval})
    if "joint" in config.concepts:
        stages.run("model", lambda: _package_model(work, results / res.HOLDOUT_FILE, transfer_jsons[0], config),
                   settings=to_dict(config))
    return report_dir


def _train_runs(work: Path, stages: Stages, config: PipelineConfig, *, store: Path) -> list[Path]:
    """Train one model per concept into ``WORK/runs/<concept>/``; return the run folders."""
    runs = []
    for concept in config.concepts:
        run_dir = work / "runs" / concept
        runs.append(run_dir)
        tc = _train_config(concept, config)
        stages.run(f"train-{concept}", lambda tc=tc, run_dir=run_dir: _train_stage(store, run_dir, tc),
                   settings=to_dict(tc))
    return runs


def _train_stage(store: Path, run_dir: Path, config: TrainConfig) -> None:
    """Train one model: resume an interrupted run of these settings, or start afresh
    when the run folder holds a run of other settings (the stage reruns because they
    changed, and the old run answers another question)."""
    # deferred: torch
    from .training.settings import TrainConfig, unresumable_changes
    from .training.train import train

    resume = (run_dir / "last.pt").exists()
    if resume:
        old = to_dict(load_config(TrainConfig, path=run_dir / "config.yaml"))
        changed = unresumable_changes(old, config=config)
        if changed:
            log.warning("%s: trained with other settings (%s); training it again from the start", run_dir,
                        ", ".join(f"{k} {old.get(k)!r} -> {to_dict(config)[k]!r}" for k in changed))
            shutil.rmtree(run_dir)
            resume = False
    train(store, out_dir=run_dir, config=config, resume=resume)


def _data(work: Path, stages: Stages, config: PipelineConfig, *, role: str) -> Path | dict[str, Path]:
    """The feature store(s) of a role: ``train`` -> its store; ``transfer`` -> {name: store}.

    From the user's catalogs when given (named by the file's stem: ``msd.csv`` ->
    ``WORK/stores/msd``), else from the built-in corpus, built first.
    """
    user = [config.train_catalog] if role == "train" and config.train_catalog else \
        list(config.transfer_catalogs) if role == "transfer" else []
    if user:
        catalogs = {Path(c).stem: Path(c) for c in user}
    else:
        name = config.train_corpus if role == "train" else config.transfer_corpus
        catalogs = {name: work / "corpus" / name / "catalog.csv"}
        stages.run(f"corpus-{name}", lambda: build_corpus(
            name, out_dir=work / "corpus" / name, workers=config.workers, cache_dir=work / "cache" / "debs", seed=config.seed),
            settings={"seed": config.seed})
    stores = {}
    for name, catalog in catalogs.items():
        stores[name] = work / "stores" / name
        stages.run(f"prepare-{name}", lambda catalog=catalog, store=stores[name]: prepare(
            read_csv(catalog), out_dir=store, workers=config.workers),
            settings=None if not user else {"catalog": str(Path(catalog).resolve())})
    return stores[next(iter(stores))] if role == "train" else stores


def _sweeps(work: Path, stages: Stages, config: PipelineConfig, *, store: Path, transfer_store: Path) -> list[Path]:
    """Tables 3 and 4 when the profile asks for them: sweep folders under ``WORK/sweeps/``."""
    # deferred: torch
    from .evaluation.sweep import run_sweep

    base = _train_config("joint", config)
    planned = []
    if config.sweep_negatives:
        neg_base = dataclasses.replace(base, n_artists=config.sweep_negatives_artists) \
            if config.sweep_negatives_artists else base
        planned.append(("negatives", config.sweep_negatives, neg_base))
    if config.sweep_artists:
        planned.append(("artists", config.sweep_artists, base))
    folders = []
    for kind, values, train_config in planned:
        out = work / "sweeps" / kind
        folders.append(out)
        stages.run(f"sweep-{kind}", lambda kind=kind, values=values, tc=train_config, out=out: run_sweep(
            kind=kind, values=list(values), store=store, transfer_store=transfer_store, out_dir=out, train_config=tc,
            transfer_config=_transfer_config(config), holdout_trials=config.n_trials),
            settings={"values": list(values), "train": to_dict(train_config), "transfer": to_dict(_transfer_config(config)),
                      "n_trials": config.n_trials})
    return folders


def _package_model(work: Path, holdout: Path, transfer: Path, config: PipelineConfig) -> None:
    """The joint model and its card in ``WORK/model/`` (``make main`` ships it in the package)."""
    # deferred: torch
    from .inference.pretrained import package_model

    def read(path: Path):
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    corpus = work / "corpus" / config.train_corpus
    catalog = Path(config.train_catalog) if config.train_catalog else corpus / "catalog.csv"
    licenses = Counter(t.extra.get("license", "") or "not stated" for t in read_csv(catalog))
    summary = None if config.train_catalog else read(corpus / "summary.json")
    package_model(run_dir=work / "runs" / "joint", out_dir=work / "model", holdout=read(holdout),
                  transfer=read(transfer), corpus=summary, licenses=dict(licenses),
                  command="make main" if config == profile_config("default") else "musicrep run")


def _retrieval_settings(config: PipelineConfig) -> dict:
    # deferred: torch
    from .evaluation.retrieval_settings import BASELINES, PARTS, K

    return {"runs": config.concepts, "seed": config.seed, "k": K, "parts": PARTS, "baselines": BASELINES}


def _report(runs: list[Path], report_dir: Path, results: Path, transfer_jsons: list[Path], sweeps: list[Path],
            config: PipelineConfig, stages: Stages) -> None:
    """Render the result files the evaluation stages wrote; compute nothing."""
    # deferred: torch
    from .report.write import render_results

    render_results(report_dir, results_dir=results, transfer_files=transfer_jsons, sweep_dirs=sweeps, runs=runs,
                   notes=_notes(config, stages))


def _notes(config: PipelineConfig, stages: Stages) -> list[str]:
    lines = [
        f"Produced by `musicrep run` with settings {json.dumps(to_dict(config), sort_keys=True)}.",
        "Wall time per stage (s, 2 CPU cores unless stated): "
        + ", ".join(f"{k} {v:.0f}" for k, v in stages.timings.items()),
    ]
    return lines
