"""The training loop: artist, album, track or joint Siamese models with N negatives.

Read :func:`_train` top to bottom: set-up (the folder, resume checks, splits,
samplers) -> model, normalisation and optimizer -> for each epoch: training steps,
validation, metrics, checkpoints, early stopping. The same function runs on one
CPU, on a GPU, and under ``torchrun --nproc_per_node K`` with
DistributedDataParallel (gloo on CPU, nccl on GPU; :mod:`musicrep.training.distributed`):
each rank samples its own batches (the rank is part of every batch's seed), DDP
averages the gradients, and rank 0 writes every file.

Resuming is exact: a batch is a pure function of (seed, rank, concept, mode,
step) (see :mod:`musicrep.training.sampling`), so a resumed run sees the very batches
the uninterrupted run would have seen, whatever the data loader; ``last.pt``
holds the weights, optimizer state, step, epoch, early-stopping state and the
torch RNG state (:mod:`musicrep.training.resume`).

The settings are :class:`~musicrep.training.settings.TrainConfig`; what a step, an
epoch and a validation pass compute is in :mod:`musicrep.training.steps`; the run
folder's other files in :mod:`musicrep.training.run_files`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

from .. import progress
from ..data.catalog import Catalog
from ..data.splits import Split, check_in_catalog, drop_duplicates, game_subset, load_splits, make_splits
from ..data.store import FeatureStore, duplicate_groups, open_store
from ..errors import DISK_FULL_ERRNOS, DiskFullError, TrainingError
from ..io import atomic_write_csv, atomic_write_text, remove_stale_temps
from ..locks import folder_lock
from .checkpoint import save_checkpoint
from .distributed import Dist, end_dist, set_threads, setup_dist, sync_buffers, wrap
from .loader import batch_stream
from .model import Encoder
from .resident import ResidentFrames, resident_stream
from .resident import fits as resident_fits
from .resume import TrainState, checkpoint_payload, match_arithmetic, restore, resume_from
from .run_files import metric_columns, read_metrics, record_weight_spread, tensorboard, write_run_files
from .sampling import ConceptSampler, SamplerSpec
from .settings import TrainConfig
from .steps import _make_optimizer, make_encoder, train_epoch, validate

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the run


def train(store_path: str | Path, *, out_dir: str | Path, config: TrainConfig, resume: bool = False) -> Path:
    """Train an encoder on a feature store; write the run folder.

    Parameters
    ----------
    store_path : a finished feature store (``STORE/``)
    out_dir : the run folder ``RUN/``: config.yaml, split/, metrics.csv, last.pt, best.pt, DONE
    config : the settings
    resume : continue the run in ``out_dir`` from ``last.pt`` (same settings, except
        those in :data:`~musicrep.training.settings.RESUMABLE`, e.g. more epochs)

    Returns
    -------
    Path of the run folder
    """
    out_dir = Path(out_dir)
    d = setup_dist()
    threads = torch.get_num_threads()
    finished = False
    try:
        # one writer per run folder; under DDP the ranks share it and rank 0 holds the lock
        with folder_lock(out_dir) if d.main else contextlib.nullcontext():
            run = _train(open_store(store_path), Path(store_path), out_dir, config, resume=resume, d=d)
        finished = True
        return run
    except (OSError, RuntimeError) as exc:
        if _disk_full(exc, out_dir):
            raise DiskFullError(f"{out_dir}: the disk is full ({exc}); free some space and rerun with --resume: "
                                "training continues from the last finished epoch") from exc
        raise
    finally:
        torch.set_num_threads(threads)  # the setting is for this run, not for the caller's process
        end_dist(d, finished=finished)


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc`` is a write that failed for want of space in ``folder``.

    ``torch.save`` reports a full disk as a ``RuntimeError`` from its C++ writer
    (``basic_ios::clear``, ``PytorchStreamWriter failed``), so those count when
    the folder's file system has (almost) no space left.
    """
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    try:
        free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    except OSError:
        return False
    return free < 64 * 2**20


# ---------------------------------------------------------------- the loop


def _train(store: FeatureStore, store_path: Path, out_dir: Path, config: TrainConfig, *, resume: bool,
           d: Dist) -> Path:
    """One run in its (locked) folder: set-up, model and optimizer, then epochs until done; the folder."""
    # ---- set-up: the folder, resume checks, splits, samplers
    ckpt = _start(out_dir, store=store, config=config, resume=resume, d=d)
    splits = _run_splits(out_dir, store=store, config=config, resumed=ckpt is not None, d=d)
    train_s, valid_s, specs = _samplers(store, store_path=store_path, splits=splits, config=config)

    # ---- model, normalisation, optimizer; a resumed run as last.pt left them
    model, mean, std = _normalised_encoder(store, splits=splits, config=config, d=d)
    optimizer = _make_optimizer(model, config)
    state = TrainState()
    if ckpt is not None:
        state = restore(ckpt, model=model, optimizer=optimizer)
        log.info("resuming %s at epoch %d, step %d", out_dir, state.epoch, state.step)
    net = wrap(model, config=config, d=d)
    if d.main:
        write_run_files(out_dir, splits=splits if ckpt is None else None, config=config, store=store,
                        store_path=store_path, world=d.world, mean=mean, std=std)
    rows = read_metrics(out_dir / "metrics.csv", upto_epoch=state.epoch) if ckpt is not None else []
    tb = tensorboard(out_dir, enabled=config.tensorboard) if d.main else None

    # ---- the loop: an epoch of steps, validation, metrics, checkpoints, early stopping
    stream = None if state.finished(config) else _train_stream(store, samplers=train_s, specs=specs, config=config,
                                                               d=d, start_step=state.step)
    bar = progress.bar(total=config.epochs * config.steps_per_epoch, initial=state.step, unit="step",
                       desc=f"train {config.concept}") if d.main else contextlib.nullcontext()
    model.train()
    try:
        with bar:
            while not state.finished(config):
                row = train_epoch(net, model=model, optimizer=optimizer, stream=stream, state=state, config=config,
                                  d=d, samplers=train_s, bar=bar if d.main else None)
                sync_buffers(model, d=d)
                row.update(validate(model, samplers=valid_s, config=config, d=d))
                rows.append(row)
                improved = state.update(row[config.monitor], monitor=config.monitor)
                if d.main:
                    _log_epoch(row, state=state, improved=improved)
                    payload = checkpoint_payload(model, optimizer=optimizer, state=state, config=config,
                                                 feature_config=store.feature_config, world=d.world)
                    _save_epoch(out_dir, rows=rows, tb=tb, payload=payload, config=config, improved=improved)
                if state.stopped_early(config):
                    log.info("early stop: %s did not improve for %d epochs", config.monitor, state.bad_epochs)
    finally:
        if stream is not None:
            stream.close()
        if tb is not None:
            tb.close()
    return _finish(model, out_dir=out_dir, state=state, config=config, d=d)


# ---------------------------------------------------------------- set-up


def _start(out_dir: Path, *, store: FeatureStore, config: TrainConfig, resume: bool, d: Dist) -> dict | None:
    """Ready the folder and this process for the run; the checkpoint to resume from (None: a fresh run)."""
    if d.main:
        # A kill during a checkpoint write leaves a hidden temp file; only this
        # job writes checkpoints here, so any temp older than now is stale.
        for path in (out_dir / "last.pt", out_dir / "best.pt"):
            remove_stale_temps(path, older_than=time.time())
    set_threads(config, d=d)
    ckpt = resume_from(out_dir, store=store, config=config, resume=resume)
    if ckpt is not None:
        match_arithmetic(ckpt, config=config, d=d, out_dir=out_dir)
        if d.main:  # a resumed run (e.g. with more epochs) is unfinished until it ends again
            (out_dir / "DONE").unlink(missing_ok=True)
    return ckpt


def _run_splits(out_dir: Path, *, store: FeatureStore, config: TrainConfig, resumed: bool,
                d: Dist) -> dict[str, Split]:
    """The run's splits: made once and written beside the run; a resumed run reads them back."""
    splits = load_splits(out_dir / "split") if resumed else make_run_splits(
        catalog=store.catalog, config=config, duplicates=duplicate_groups(store))
    for s in splits.values():
        check_in_catalog(s, catalog=store.catalog)
    if d.main:
        for c in config.concepts:
            log.info("%s", describe_use(concept_split(splits, concept=c), n_catalog=len(store.catalog)))
    return splits


def make_run_splits(*, catalog: Catalog, config: TrainConfig,
                    duplicates: Sequence[Sequence[str]] = ()) -> dict[str, Split]:
    """Every split the catalog can give (not only the run's concepts'), drawn together.

    See :func:`musicrep.data.splits.make_splits`: a song held out by any concept is
    held out by all, and runs of different concepts with one seed share them.
    ``duplicates`` (groups of track ids with the same audio) keep one track each;
    with ``n_games`` only the songs of that many games are drawn from (:func:`game_subset`).
    """
    if config.n_games is not None:
        catalog = game_subset(catalog, n_games=config.n_games, column=config.game_column, seed=config.seed)
    catalog, dropped = drop_duplicates(catalog, groups=duplicates)
    if dropped:
        log.warning("%d track(s) left out of the splits: the same audio as another track (e.g. %s = %s)",
                    len(dropped), *next(iter(dropped.items())))
    return make_splits(
        catalog=catalog, concepts=config.concepts, n_artists=config.n_artists,
        songs_per_artist=config.songs_per_artist, artist_valid=config.artist_valid, artist_test=config.artist_test,
        n_albums=config.n_albums, songs_per_album=config.songs_per_album, album_valid=config.album_valid,
        album_test=config.album_test, seed=config.seed, n_values=config.n_values,
        songs_per_value=config.songs_per_value, value_valid=config.value_valid, value_test=config.value_test,
    )


def describe_use(split: Split, *, n_catalog: int) -> str:
    """One line on what a concept's split uses of the catalog and what it leaves out."""
    parts = {p: len(split.track_ids(p)) for p in ("train", "valid", "test")}
    used = sum(parts.values())
    what = "songs" if split.concept == "track" else f"{split.concept}s"
    return (f"{split.concept} split: {used} songs of {split.n_labels} {what} "
            f"({parts['train']} train, {parts['valid']} valid, {parts['test']} test); {n_catalog - used} of the "
            f"catalog's {n_catalog} songs left out (too few songs per {split.concept}, no {split.concept} "
            f"label, or over the per-{split.concept} count)")


def concept_split(splits: dict[str, Split], *, concept: str) -> Split:
    """The split a concept samples from (the track concept: the artist split plus songs without an artist)."""
    return splits[concept] if concept in splits else splits["artist"]


def _samplers(store: FeatureStore, *, store_path: Path, splits: dict[str, Split], config: TrainConfig,
              ) -> tuple[dict[str, ConceptSampler], dict[str, ConceptSampler], list[SamplerSpec]]:
    """(train samplers, valid samplers, picklable train specs), one per concept."""
    kw = {"negatives": config.negatives, "segment_frames": store.feature_config.segment_frames,
          "distinct_negatives": config.distinct_negatives}
    train_s = {c: ConceptSampler(store=store, split=concept_split(splits, concept=c), concept=c, mode="train", **kw)
               for c in config.concepts}
    valid_s = {c: ConceptSampler(store=store, split=concept_split(splits, concept=c), concept=c, mode="valid", **kw)
               for c in config.concepts}
    specs = [SamplerSpec(store_path=str(store_path), split=concept_split(splits, concept=c), concept=c, mode="train", **kw)
             for c in config.concepts]
    for s in list(train_s.values()) + list(valid_s.values()):
        log.info("%r", s)
    return train_s, valid_s, specs


def _normalised_encoder(store: FeatureStore, *, splits: dict[str, Split], config: TrainConfig,
                        d: Dist) -> tuple[Encoder, float, float]:
    """(encoder, mean, std): the run's encoder, initialised from ``config.seed``, on the device.

    The training split's log-mel statistics travel with the weights as its normalisation.
    """
    torch.manual_seed(config.seed)
    model = make_encoder(config, n_mels=store.feature_config.n_mels)
    train_ids = sorted({t for c in config.concepts for t in concept_split(splits, concept=c).track_ids("train")})
    mean, std = store.stats(train_ids)
    model.set_normalization(mean, std)
    model.to(d.device)
    return model, mean, std


def _train_stream(store: FeatureStore, *, samplers: dict[str, ConceptSampler], specs: list[SamplerSpec],
                  config: TrainConfig, d: Dist, start_step: int) -> Iterator[dict[str, torch.Tensor]]:
    """The training batches from ``start_step``: gathered on the device from resident
    frames (:mod:`musicrep.training.resident`) or read from the store by the loader; the same
    batches either way."""
    ids = [t for s in samplers.values() for t in s.track_ids]
    resident = config.resident_frames == "always" or (
        config.resident_frames == "auto" and resident_fits(store=store, track_ids=ids, device=d.device))
    if resident:
        frames = ResidentFrames(store=store, track_ids=ids, device=d.device)
        log.info("training frames resident on %s (%.2f GB)", d.device, frames.frames.numel() * 2 / 1e9)
        return resident_stream(samplers=samplers, frames=frames, batch_size=config.batch_size, seed=config.seed,
                               rank=d.rank, start_step=start_step)
    return batch_stream(samplers=samplers, specs=specs, batch_size=config.batch_size, seed=config.seed, rank=d.rank,
                        start_step=start_step, num_workers=config.num_workers, prefetch=config.prefetch,
                        pin_memory=d.device.type == "cuda")


# ---------------------------------------------------------------- each epoch's end, the run's end


def _log_epoch(row: dict, *, state: TrainState, improved: bool) -> None:
    """One line per epoch (from rank 0, whatever the number of processes)."""
    log.info("epoch %d: train_loss %.4f valid_loss %.4f valid_acc %.3f%s", state.epoch,
             row["train_loss"], row["valid_loss"], row["valid_acc"], " (best)" if improved else "")


def _save_epoch(out_dir: Path, *, rows: list[dict], tb: SummaryWriter | None, payload: dict, config: TrainConfig,
                improved: bool) -> None:
    """metrics.csv, tensorboard, best.pt (when improved) and last.pt, in that order."""
    atomic_write_csv(out_dir / "metrics.csv", rows=rows, fieldnames=metric_columns(config.concepts))
    if tb is not None:
        for k, val in rows[-1].items():
            if k not in ("epoch", "step"):
                tb.add_scalar(k, float(val), rows[-1]["step"])
    if improved:
        save_checkpoint(payload, path=out_dir / "best.pt")
    save_checkpoint(payload, path=out_dir / "last.pt")  # last: after best, so resume never skips a best


def _finish(model: Encoder, *, out_dir: Path, state: TrainState, config: TrainConfig, d: Dist) -> Path:
    """The run's end: the ranks' weight spread (DDP), a check that a best model exists, then DONE."""
    if d.world > 1:
        record_weight_spread(model, out_dir=out_dir, d=d)
    if not math.isfinite(state.best):
        raise TrainingError(f"{out_dir}: {config.monitor} was never finite in {state.epoch} epoch(s), so there "
                            "is no best model (the run diverged); lower the learning rate and train afresh")
    if d.main:
        atomic_write_text(out_dir / "DONE", text=f"epoch {state.epoch} step {state.step} best {config.monitor} "
                                                f"{state.best:.6g}\n")
    return out_dir
