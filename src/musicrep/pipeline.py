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
    sweeps    Tables 3 and 4 and the number of games, when the
              profile asks for them (``jobs`` of them at once)      -> WORK/sweeps/{negatives,artists,games}/
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
import functools
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from .concepts import JOINT, PAPER_CONCEPTS, check_concept
from .config import load_config, save_config, settings_digest, to_dict
from .data.catalog import read_csv
from .data.corpus import CORPORA, build_corpus
from .data.corpus.summary import summarize
from .data.corpus.unseen import NOTES_FILE, TARGET_FILES, TRAIN_FILE, write_unseen
from .data.prepare import prepare
from .data.store_files import read_index
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
    # built-in corpora for Table 2 (label = genre column), each a transfer target
    transfer_corpora: tuple[str, ...] = ("folk",)
    # packages of the games corpus held out of metadata training entirely: their
    # tracks become the unseen-soundtracks target (label = game) and, where two or
    # more of their composers have unseen_composer_songs songs, unseen-composers
    unseen_games: tuple[str, ...] = ()
    unseen_composer_songs: int = dataclasses.field(default=5, metadata={"min": 2})
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
    # the sweeps' training seeds, one sweep per seed (each seed draws its own splits
    # and artists; the report gives the mean and a 95 % interval over them); empty: seed
    sweep_seeds: tuple[int, ...] = ()
    # the model the artists sweep trains: joint (the paper's Table 4) or one concept
    sweep_artists_concept: str = JOINT
    # beyond the paper: the number of training games per point (the built-in corpus's
    # packages, nested: see TrainConfig.n_games), and the model that sweep trains
    sweep_games: tuple[int, ...] = ()
    sweep_games_concept: str = JOINT
    # sweep stages run at once, each in its own process with cores // jobs torch threads
    # (at least 1): on 2 cores two 1-thread trainings make 1.3-1.5x the steps of one
    # 2-thread training (small convolutions leave the second thread idle)
    jobs: int = dataclasses.field(default=1, metadata={"min": 1})
    # TrainConfig settings applied to every model (key -> value), e.g. epochs.
    train: dict = dataclasses.field(default_factory=dict)
    # TransferConfig settings for Table 2.
    transfer: dict = dataclasses.field(default_factory=dict)


#: CPU-sized settings. The paper's are in TrainConfig's defaults (5000 artists,
#: 20 songs per artist, 100s of epochs on a GPU); these fit 2 cores.
PROFILES: dict[str, dict] = {
    "default": {
        "train_corpus": "games-full",
        # three Table 2 targets: folk tune type and Essen region (rendered), and the
        # soundtracks of nine games held out of metadata training (real recordings),
        # with their composers as a fourth. The nine: the four `games` held out before
        # (drascula, heroes, pekka-kana-2, planetblupi: >= 10 tracks, composers unknown
        # or with < 10 songs), and every game of 10-15 tracks whose music is by one
        # composer (ardentryst, davegnukem, marsshooter, pushover, tecnoballz), so that
        # six composers no model trained on have >= 5 songs. 129 tracks held out; 21
        # composers with >= 5 songs stay for the artist concept.
        "transfer_corpora": ["folk", "essen"],
        "unseen_games": ["drascula-music", "heroes-sound-tracks", "pekka-kana-2-data", "planetblupi-music-ogg",
                         "ardentryst", "davegnukem-data", "marsshooter-data", "pushover-data", "tecnoballz-data"],
        # the `cpu` training profile (musicrep/configs/cpu.yaml), which says why each differs
        "train": profile_settings("cpu"),
        "transfer": {"cnn_steps": 600},
        # Table 4's question at this scale: artist models on 5, 10 and all 21 composers,
        # three split seeds each (5 is the fewest that leave an anchor 4 negatives of
        # other composers among the valid and test songs, one per composer)
        "sweep_artists": [5, 10, 21],
        "sweep_seeds": [0, 1, 2],
        "sweep_artists_concept": "artist",
        # and over games: track models on 14, 28 and all 55 training games (the track
        # concept is the one whose songs grow with every game, credited or not)
        "sweep_games": [14, 28, 55],
        "sweep_games_concept": "track",
        "jobs": 2,
    },
    # The paper's scale on the user's data: TrainConfig's defaults are the paper's
    # (width 256, 20 songs per artist 16/2/2, 10 per album 8/1/1, margins 0.4 / 0.25 /
    # 0.1, 4 negatives, batch 15, 100 x 500 steps); 5,000 artists and 10,000 albums;
    # Table 3 at 1,000 artists, Table 4 from 500 to 10,000 artists. A GPU job.
    "paper": {
        "train_corpus": "",
        "transfer_corpora": [],
        "train": {"n_artists": 5000, "n_albums": 10000},
        "sweep_negatives": [1, 2, 4, 8, 16],
        "sweep_negatives_artists": 1000,
        "sweep_artists": [500, 1000, 2000, 5000, 10000],
    },
    "quick": {
        "train_corpus": "games-mini",
        "transfer_corpora": ["folk-mini", "essen-mini"],
        # two games without a composer of >= 5 songs: 5 composers stay for the artist split
        "unseen_games": ["bomberclone-data", "pekka-kana-2-data"],
        "n_trials": 300,
        "map_points": 400,
        "train": {
            "width": 64, "batch_size": 15, "epochs": 3, "steps_per_epoch": 25, "valid_batches": 4,
            "patience": 3, "songs_per_artist": 5, "artist_valid": 1, "artist_test": 1,
            "songs_per_album": 5, "album_valid": 1, "album_test": 1,
        },
        "transfer": {"seeds": [0, 1, 2], "cnn_trials": 1, "cnn_steps": 150},
        "sweep_artists": [5],
        "sweep_seeds": [0, 1],
        "sweep_artists_concept": "artist",
        # one point (all 6 training games): the stage runs, the trend needs the default profile
        "sweep_games": [6],
        "sweep_games_concept": "track",
        "jobs": 2,
    },
}


def profile_config(profile: str, *, config_file: str | Path | None = None, overrides: tuple[str, ...] = ()) -> PipelineConfig:
    """The settings of a named profile, then a YAML file, then ``key=value`` overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    base = load_config(PipelineConfig, path=None, overrides=[], base=None)
    base = dataclasses.replace(base, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in PROFILES[profile].items()})
    config = load_config(PipelineConfig, path=config_file, overrides=overrides, base=base)
    for c in (*config.concepts, config.sweep_artists_concept, config.sweep_games_concept):  # the paper's, or any catalog column (label, ...)
        if c != JOINT:
            check_concept(c)
    if not config.train_catalog and not config.train_corpus:
        raise ConfigError(f"profile {profile!r} trains on your catalog: give --train-catalog CSV (e.g. made by "
                          "`musicrep catalog msd track_metadata.db audio/ -o msd.csv`)")
    if not config.transfer_catalogs and not config.transfer_corpora:
        raise ConfigError(f"profile {profile!r} transfers to your genre catalogs: give --transfer-catalog CSV "
                          "(e.g. `musicrep catalog gtzan gtzan/ --splits SPLITS -o gtzan.csv`), once per dataset")
    for name in ((config.train_corpus,) if not config.train_catalog else ()) + (
            tuple(config.transfer_corpora) if not config.transfer_catalogs else ()):
        if name not in CORPORA:
            raise ConfigError(f"unknown corpus {name!r}; choose among {', '.join(CORPORA)}")
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
        if not self._due(name, settings):
            return
        log.info("stage %s: starting", name)
        t0 = time.perf_counter()
        fn()
        self._finish(name, settings, elapsed=time.perf_counter() - t0)

    def run_parallel(self, stages: list[tuple[str, Callable[[], object], object]], *, jobs: int) -> None:
        """Run independent stages ``(name, fn, settings)``, ``jobs`` at a time, each in a
        process of its own (``fn`` must pickle: a module-level function or a partial of one)
        with :func:`worker_threads` torch threads, the parent's log level and no progress bars.

        Every stage runs to its end even when another fails; then the first failure is
        raised, so the finished stages keep their markers and a rerun does only the rest.
        ``jobs=1`` runs them here, one after another, exactly as :meth:`run`.
        """
        if jobs <= 1:
            for name, fn, settings in stages:
                self.run(name, fn, settings=settings)
            return
        due = [(name, fn, settings) for name, fn, settings in stages if self._due(name, settings)]
        if not due:
            return
        errors: list[BaseException] = []
        level = logging.getLogger("musicrep").getEffectiveLevel()
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=min(jobs, len(due)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {}
            for name, fn, settings in due:
                log.info("stage %s: queued (%d run at once)", name, min(jobs, len(due)))
                futures[name] = (pool.submit(_in_worker, fn, threads=worker_threads(jobs), log_level=level), settings)
            for name, (future, settings) in futures.items():
                try:
                    self._finish(name, settings, elapsed=future.result())
                except BaseException as exc:  # noqa: BLE001 - the others finish first; raised below
                    log.error("stage %s: failed: %s", name, exc)
                    errors.append(exc)
        wall = f"{due[0][0]} .. {due[-1][0]} (wall, {min(jobs, len(due))} at once)"
        self.timings[wall] = round(time.perf_counter() - t0, 1)
        atomic_write_json(self.timings_path, obj=self.timings)
        log.info("stages %s: %.0f s", wall, self.timings[wall])
        if errors:
            raise errors[0]

    def _due(self, name: str, settings: object) -> bool:
        """Whether stage ``name`` must run: no marker with these settings, or an earlier stage ran again."""
        mark = self.marks / f"{name}.done"
        if mark.exists() and not self._rerun_from_here:
            recorded = json.loads(mark.read_text(encoding="utf-8")).get("settings")
            if recorded == settings_digest(settings):
                log.info("stage %s: done earlier (%.0f s); skipped", name, self.timings.get(name, float("nan")))
                return False
            log.warning("stage %s: its settings changed since it ran; running it (and the stages after it) again",
                        name)
        self._rerun_from_here = self._rerun_from_here or mark.exists()
        mark.unlink(missing_ok=True)
        return True

    def _finish(self, name: str, settings: object, *, elapsed: float) -> None:
        self.timings[name] = round(elapsed, 1)
        atomic_write_json(self.timings_path, obj=self.timings)
        atomic_write_json(self.marks / f"{name}.done", obj={"seconds": self.timings[name],
                                                           "settings": settings_digest(settings)})
        log.info("stage %s: finished in %.0f s", name, elapsed)


def worker_threads(jobs: int) -> int:
    """torch threads of each of ``jobs`` stages run at once: their share of the cores, at least 1."""
    return max(1, (os.cpu_count() or 1) // jobs)


def _in_worker(fn: Callable[[], object], *, threads: int, log_level: int) -> float:
    """A stage in a worker process of :meth:`Stages.run_parallel`: torch threads, logging
    like the parent's (no progress bars: several would interleave), then ``fn()``; its
    wall time in seconds."""
    # deferred: torch
    import torch

    from . import progress
    from .cli import log_at

    torch.set_num_threads(threads)
    log_at(log_level)
    progress.set_enabled(False)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


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
    train_store, unseen = _train_data(work, stages, config)
    transfer_stores = _transfer_data(work, stages, config, unseen=unseen)
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
    sweeps = _sweeps(work, stages, config, store=train_store, transfer_stores=transfer_stores)
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


def _train_data(work: Path, stages: Stages, config: PipelineConfig) -> tuple[Path, dict[str, Path]]:
    """The training store, and the catalogs of the unseen-games targets (name -> CSV).

    From the user's catalog when given (named by the file's stem: ``msd.csv`` ->
    ``WORK/stores/msd``), else from the built-in corpus, built first; with
    ``unseen_games`` the store holds only the games left for metadata training.
    """
    if config.train_catalog:
        catalog = Path(config.train_catalog)
        return _prepare_stage(work, stages, config, name=catalog.stem, catalog=catalog, user=True), {}
    name = config.train_corpus
    catalog = _corpus_stage(work, stages, config, name=name)
    targets: dict[str, Path] = {}
    if config.unseen_games:
        stages.run("unseen-games", lambda: write_unseen(catalog.parent, packages=config.unseen_games,
                                                        min_composer_songs=config.unseen_composer_songs),
                   settings={"packages": list(config.unseen_games), "songs": config.unseen_composer_songs})
        targets = {f"unseen-{t}": catalog.parent / f for t, f in TARGET_FILES.items() if (catalog.parent / f).is_file()}
        catalog = catalog.parent / TRAIN_FILE
    return _prepare_stage(work, stages, config, name=name, catalog=catalog, user=False), targets


def _transfer_data(work: Path, stages: Stages, config: PipelineConfig, *, unseen: dict[str, Path]) -> dict[str, Path]:
    """The transfer stores, name -> store: the user's catalogs, or the built-in corpora and the unseen games."""
    if config.transfer_catalogs:
        return {Path(c).stem: _prepare_stage(work, stages, config, name=Path(c).stem, catalog=Path(c), user=True)
                for c in config.transfer_catalogs}
    stores = {name: _prepare_stage(work, stages, config, name=name, catalog=_corpus_stage(work, stages, config,
                                                                                          name=name), user=False)
              for name in config.transfer_corpora}
    stores.update({name: _prepare_stage(work, stages, config, name=name, catalog=csv, user=False)
                   for name, csv in unseen.items()})
    return stores


def _corpus_stage(work: Path, stages: Stages, config: PipelineConfig, *, name: str) -> Path:
    """Build a built-in corpus into ``WORK/corpus/NAME``; its catalog's path."""
    stages.run(f"corpus-{name}", lambda: build_corpus(
        name, out_dir=work / "corpus" / name, workers=config.workers, cache_dir=work / "cache" / "debs",
        seed=config.seed), settings={"seed": config.seed})
    return work / "corpus" / name / "catalog.csv"


def _prepare_stage(work: Path, stages: Stages, config: PipelineConfig, *, name: str, catalog: Path,
                   user: bool) -> Path:
    """Prepare ``WORK/stores/NAME`` from ``catalog``; its path.

    A store holding tracks the catalog lacks (a store of the whole games corpus,
    before games were held out) is made again: prepare keeps old tracks, and
    training would see them.
    """
    store = work / "stores" / name
    cat = read_csv(catalog)

    def run() -> None:
        stored = {r["track_id"] for r in read_index(store)}
        stale = stored - set(cat.track_ids)
        if stale:
            log.warning("%s holds %d track(s) its catalog %s lacks (e.g. %s); preparing it again", store,
                        len(stale), catalog, sorted(stale)[0])
        prepare(cat, out_dir=store, workers=config.workers, overwrite=bool(stale))

    # which tracks the catalog holds: a store prepared before some games were held out (or
    # before the unseen-games stage existed) is prepared again rather than skipped
    settings = {"tracks": settings_digest(sorted(cat.track_ids))}
    stages.run(f"prepare-{name}", run, settings={"catalog": str(Path(catalog).resolve()), **settings} if user
               else settings)
    return store


def _sweeps(work: Path, stages: Stages, config: PipelineConfig, *, store: Path,
            transfer_stores: dict[str, Path]) -> list[Path]:
    """Tables 3 and 4 when the profile asks for them: sweep folders under ``WORK/sweeps/``
    (``WORK/sweeps/KIND/seed-S/`` for each of several ``sweep_seeds``)."""
    # deferred: torch
    from .evaluation.sweep import run_sweep

    base = _train_config(JOINT, config)
    planned = []
    if config.sweep_negatives:
        neg_base = dataclasses.replace(base, n_artists=config.sweep_negatives_artists) \
            if config.sweep_negatives_artists else base
        planned.append(("negatives", config.sweep_negatives, neg_base, None))
    if config.sweep_artists:
        concept = None if config.sweep_artists_concept == JOINT else config.sweep_artists_concept
        planned.append(("artists", config.sweep_artists, base, concept))
    if config.sweep_games:
        concept = None if config.sweep_games_concept == JOINT else config.sweep_games_concept
        planned.append(("games", config.sweep_games, base, concept))
    seeds = config.sweep_seeds or (config.seed,)
    transfer_config = _transfer_config(config)
    folders, jobs = [], []
    for kind, values, train_config, concept in planned:
        for seed in seeds:
            out = work / "sweeps" / kind / f"seed-{seed}" if config.sweep_seeds else work / "sweeps" / kind
            name = f"sweep-{kind}-seed-{seed}" if config.sweep_seeds else f"sweep-{kind}"
            tc = dataclasses.replace(train_config, seed=seed)
            folders.append(out)
            fn = functools.partial(run_sweep, kind=kind, values=list(values), store=store,
                                   transfer_store=transfer_stores, out_dir=out, train_config=tc,
                                   transfer_config=transfer_config, holdout_trials=config.n_trials, concept=concept)
            settings = {"values": list(values), "train": to_dict(tc), "transfer": to_dict(transfer_config),
                        "n_trials": config.n_trials, "concept": concept, "targets": sorted(transfer_stores)}
            if config.jobs > 1:  # torch's thread count can move the last bits of a training
                settings["threads"] = worker_threads(config.jobs)
            jobs.append((name, fn, settings))
    stages.run_parallel(jobs, jobs=config.jobs)
    return folders


def _package_model(work: Path, holdout: Path, transfer: Path, config: PipelineConfig) -> None:
    """The joint model and its card in ``WORK/model/`` (``make main`` ships it in the package)."""
    # deferred: torch
    from .inference.pretrained import package_model

    def read(path: Path):
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    # the catalog the model trained on: without the unseen games when they were held out
    corpus = work / "corpus" / config.train_corpus
    catalog = Path(config.train_catalog) if config.train_catalog else \
        corpus / (TRAIN_FILE if config.unseen_games else "catalog.csv")
    tracks = read_csv(catalog)
    licenses = Counter(t.extra.get("license", "") or "not stated" for t in tracks)
    summary = None if config.train_catalog else summarize(tracks, skipped=[], info={})
    package_model(run_dir=work / "runs" / "joint", out_dir=work / "model", holdout=read(holdout),
                  transfer=read(transfer), corpus=summary, licenses=dict(licenses),
                  command="make main" if config == profile_config("default") else "musicrep run",
                  corpus_name=config.train_corpus or Path(config.train_catalog).stem)


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
    unseen = stages.work / "corpus" / config.train_corpus / NOTES_FILE
    held = json.loads(unseen.read_text(encoding="utf-8"))["notes"] if config.unseen_games and unseen.is_file() else []
    lines = [f"Unseen games: {line}." for line in held] + [
        f"Produced by `musicrep run` with settings {json.dumps(to_dict(config), sort_keys=True)}.",
        "Wall time per stage (s, 2 CPU cores unless stated): "
        + ", ".join(f"{k} {v:.0f}" for k, v in stages.timings.items()),
    ]
    return lines
