"""The training loop: artist, album, track or joint Siamese models with N negatives.

Read top to bottom: settings -> splits -> normalisation -> model and optimizer ->
for each epoch: training steps, validation, metrics, checkpoints, early stopping.
The same function runs on one CPU, on a GPU, and under ``torchrun
--nproc_per_node K`` with DistributedDataParallel (gloo on CPU, nccl on GPU):
each rank samples its own batches (the rank is part of every batch's seed), DDP
averages the gradients, and rank 0 writes every file.

Resuming is exact: a batch is a pure function of (seed, rank, concept, mode,
step) (see :mod:`musicrep.training.sampling`), so a resumed run sees the very batches
the uninterrupted run would have seen, whatever the data loader; ``last.pt``
holds the weights, optimizer state, step, epoch, early-stopping state and the
torch RNG state.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from .. import progress
from ..concepts import (
    COLUMN_MARGIN,
    JOINT,
    PAPER_CONCEPTS,
    PAPER_MARGINS,
    check_concept,
)
from ..config import save_config, to_dict
from ..data.splits import (
    Split,
    check_in_catalog,
    drop_duplicates,
    load_splits,
    make_splits,
    write_splits,
)
from ..data.store import duplicate_groups
from ..errors import DISK_FULL_ERRNOS, ConfigError, DiskFullError, TrainingError
from ..io import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)
from ..locks import folder_lock
from .checkpoint import read_checkpoint, save_checkpoint
from .losses import (
    LOSSES,
    REDUCTIONS,
    candidate_similarities,
    info_nce,
    joint_loss,
    masked_accuracy,
    masked_hinge,
)
from .model import INITS, Encoder
from .resident import ResidentFrames, resident_stream
from .resident import fits as resident_fits
from .sampling import (
    ConceptSampler,
    SamplerSpec,
    batch_labels,
    batch_stream,
    make_batches,
)

log = logging.getLogger(__name__)

# Settings that may change when resuming: they do not change the numbers.
RESUMABLE: frozenset[str] = frozenset({"epochs", "patience", "num_workers", "prefetch", "tensorboard",
                                      "resident_frames"})


def _f(default, **meta):
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Defaults: the 2019 paper's (width 256, margins, splits) and, where the papers
    are silent, the authors' 2018 Keras code (``ismir2018-artist``): batch 15,
    loss summed over the batch, SGD lr 0.1 Nesterov 0.9 with Keras time-based
    decay 1e-6 per step, L2 1e-5 on the convolution kernels, ``he_uniform``
    init with biases, Keras BatchNorm constants, per-slot BatchNorm statistics
    and distinct negatives. ``docs/fidelity.md`` lists each with the authors'
    value and why one would change it.
    """

    # artist, album, track, joint, or any catalog column that groups songs (musicrep.concepts)
    concept: str = "artist"
    joint: tuple[str, ...] = PAPER_CONCEPTS  # the concepts a joint model trains: the paper's three
    negatives: int = _f(4, min=0)  # sampled negatives per anchor; 0 only with in_batch_negatives
    # beyond the paper: the batch's other positives (of other labels) as negatives too
    in_batch_negatives: bool = False
    loss: str = _f("hinge", choices=LOSSES)  # "infonce": softmax cross-entropy over the candidates (not the paper's)
    temperature: float = _f(0.1, min=0.0, min_exclusive=True)  # InfoNCE only
    width: int = _f(256, min=1)
    batch_size: int = _f(15, min=2)  # anchors per concept per step (per process under DDP); the authors' 15
    loss_reduction: str = _f("sum", choices=REDUCTIONS)  # over the batch: the authors' K.sum; "mean" departs
    optimizer: str = _f("sgd", choices=("sgd", "adam"))
    lr: float = _f(0.1, min=0.0, min_exclusive=True)
    lr_decay: float = _f(1e-6, min=0.0)  # Keras time-based decay: lr / (1 + lr_decay * step)
    momentum: float = _f(0.9, min=0.0, max=1.0)  # SGD only, with Nesterov as in the 2018 code
    nesterov: bool = True
    weight_decay: float = _f(0.0, min=0.0)  # torch weight decay on every parameter (not the authors')
    l2_conv: float = _f(1e-5, min=0.0)  # Keras kernel_regularizer=l2(1e-5): + l2_conv * sum(w^2) per step
    init: str = _f("he_uniform", choices=INITS)
    conv_bias: bool = True  # the authors' Conv1D layers keep their bias
    bn_eps: float = _f(1e-3, min=0.0, min_exclusive=True)  # Keras BatchNormalization epsilon
    bn_momentum: float = _f(0.01, min=0.0, max=1.0, min_exclusive=True)  # torch convention; Keras 0.99
    bn_per_slot: bool = True  # anchor, positive and each negative get their own BatchNorm statistics
    distinct_negatives: bool = True  # an anchor's N negatives are N different songs
    epochs: int = _f(100, min=1)
    steps_per_epoch: int = _f(500, min=1)
    valid_batches: int = _f(20, min=1)  # per concept, the same batches every epoch
    patience: int = _f(10, min=1)  # epochs without improvement before stopping
    monitor: str = _f("valid_loss", choices=("valid_loss", "valid_acc"))
    seed: int = 0
    n_artists: int | None = _f(None, min=2)  # None: every qualifying artist
    songs_per_artist: int = _f(20, min=3)
    artist_valid: int = _f(2, min=1)
    artist_test: int = _f(2, min=1)
    n_albums: int | None = _f(None, min=2)  # None: 2 x n_artists, or every qualifying album
    songs_per_album: int = _f(10, min=3)
    album_valid: int = _f(1, min=1)
    album_test: int = _f(1, min=1)
    margin_artist: float = _f(PAPER_MARGINS["artist"], min=0.0)
    margin_album: float = _f(PAPER_MARGINS["album"], min=0.0)
    margin_track: float = _f(PAPER_MARGINS["track"], min=0.0)
    # concepts on other catalog columns: their split (like the album rule) and margins ("label=0.3")
    n_values: int | None = _f(None, min=2)  # None: every qualifying value of the column
    songs_per_value: int = _f(10, min=3)
    value_valid: int = _f(1, min=1)
    value_test: int = _f(1, min=1)
    column_margins: tuple[str, ...] = ()  # COLUMN=MARGIN entries; a column without one gets COLUMN_MARGIN
    amp: bool = False  # bf16 autocast for the encoder's forward pass
    compile: bool = False  # torch.compile the training forward (faster steps after a minute of compiling)
    num_workers: int = _f(0, min=0)  # 0: a prefetch thread; K: K DataLoader worker processes
    prefetch: int = _f(2, min=0)  # batches made ahead of the model
    threads: int = _f(0, min=0)  # torch CPU threads; 0 leaves torch's choice (cores / processes under DDP)
    # training frames kept on the device and batches gathered there (musicrep.training.resident):
    # auto = on a GPU when they fit in half its free memory; the same batches either way
    resident_frames: str = _f("auto", choices=("auto", "always", "never"))
    tensorboard: bool = True  # also log to RUN/tb when tensorboard is installed

    def __post_init__(self) -> None:
        for c in ((self.concept,) if self.concept != JOINT else ()) + tuple(self.joint):
            check_concept(c)
        if self.concept == JOINT and len(set(self.joint)) < 2:
            raise ConfigError(f"joint={','.join(self.joint)}: a joint model needs at least two different concepts")
        self._column_margins()  # parses, or says what is wrong
        if self.negatives == 0 and not self.in_batch_negatives:
            raise ConfigError("negatives=0 leaves an anchor nothing to beat; use negatives >= 1 or "
                              "in_batch_negatives=true")

    @property
    def concepts(self) -> tuple[str, ...]:
        return tuple(self.joint) if self.concept == JOINT else (self.concept,)

    def _column_margins(self) -> dict[str, float]:
        out = {}
        for entry in self.column_margins:
            name, sep, value = str(entry).partition("=")
            try:
                margin = float(value)
            except ValueError:
                margin = -1.0
            if not sep or margin < 0:
                raise ConfigError(f"column_margins: {entry!r} is not COLUMN=MARGIN with a margin >= 0 (e.g. label=0.3)")
            if name in PAPER_CONCEPTS:
                raise ConfigError(f"column_margins: set the {name} margin with margin_{name}={value}")
            out[check_concept(name)] = margin
        return out

    @property
    def anchors_per_loss(self) -> int:
        """How many anchors one concept's loss value adds up (divide by it for a per-anchor figure)."""
        return self.batch_size if self.loss_reduction == "sum" else 1

    def margin(self, concept: str) -> float:
        paper = {"artist": self.margin_artist, "album": self.margin_album, "track": self.margin_track}
        return paper[concept] if concept in paper else self._column_margins().get(concept, COLUMN_MARGIN)


# ---------------------------------------------------------------- distributed

@dataclasses.dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_dist() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return _Dist(device=torch.device("cuda" if cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local, device=device)


def _end_dist(d: _Dist, *, finished: bool) -> None:
    """Tear the process group down, after every rank has finished when the run did.

    Without the barrier a rank that finishes first tears its gloo connections
    down while rank 0 is still writing the run's last files. Once (in CI; not
    reproduced in 35 runs here, under load or not) such a rank aborted
    right then ("terminate called without an active exception", SIGABRT) and
    failed a finished run; with every rank past the barrier none tears down
    while another still talks. After an error no barrier: the others may be gone.
    """
    if d.world > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def _all_sum(values: list[float], d: _Dist) -> list[float]:
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def _sync_buffers(model: torch.nn.Module, d: _Dist) -> None:
    """BatchNorm running stats from rank 0: DDP syncs them before a forward, not after it."""
    if d.world > 1:
        for b in model.buffers():
            dist.broadcast(b.data, src=0)


def _weight_spread(model: torch.nn.Module, d: _Dist) -> float:
    """Largest difference of any weight or buffer between rank 0 and the other ranks."""
    flat = torch.cat([t.detach().double().reshape(-1) for t in model.state_dict().values()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = torch.tensor([float((flat - ref).abs().max())], dtype=torch.float64, device=flat.device)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


# ---------------------------------------------------------------- pieces

def make_run_splits(*, catalog, config: TrainConfig, duplicates: Sequence[Sequence[str]] = ()) -> dict[str, Split]:
    """Every split the catalog can give (not only the run's concepts'), drawn together.

    See :func:`musicrep.data.splits.make_splits`: a song held out by any concept is
    held out by all, and runs of different concepts with one seed share them.
    ``duplicates`` (groups of track ids with the same audio) keep one track each.
    """
    if duplicates:
        catalog, dropped = drop_duplicates(catalog, groups=duplicates)
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


def make_encoder(config: TrainConfig, *, n_mels: int) -> Encoder:
    """The encoder a run trains, with the run's architecture and init settings."""
    return Encoder(width=config.width, n_mels=n_mels, conv_bias=config.conv_bias, bn_eps=config.bn_eps,
                   bn_momentum=config.bn_momentum, init=config.init)


def concept_split(splits: dict[str, Split], *, concept: str) -> Split:
    """The split a concept samples from (the track concept: the artist split plus songs without an artist)."""
    return splits[concept] if concept in splits else splits["artist"]


def lr_at(step: int, *, config: TrainConfig) -> float:
    """Keras time-based decay, as the authors' ``SGD(decay=1e-6)``: ``lr / (1 + decay * step)``."""
    return config.lr / (1.0 + config.lr_decay * step)


def _make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # on a GPU one fused kernel updates every parameter; on CPU the reference loop
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay, **fused)


def concept_loss(sims: torch.Tensor, *, valid: torch.Tensor, concept: str, config: TrainConfig) -> torch.Tensor:
    """One concept's loss from its candidates' similarities: the paper's hinge (its margin) or InfoNCE."""
    if config.loss == "infonce":
        return info_nce(sims, valid=valid, temperature=config.temperature, reduction=config.loss_reduction)
    return masked_hinge(sims, valid=valid, margin=config.margin(concept), reduction=config.loss_reduction)


def step_losses(
    model: torch.nn.Module, *, batches: dict[str, torch.Tensor], config: TrainConfig, device: torch.device,
    labels: dict[str, np.ndarray] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Loss of one step: every concept's batch through the encoder in one forward pass.

    Parameters
    ----------
    batches : concept -> [B, 2 + N, T, n_mels] (anchor, positive, negatives)
    labels : concept -> int [B], the anchors' labels (:func:`musicrep.training.sampling.batch_labels`);
        needed with ``config.in_batch_negatives``

    Returns
    -------
    (total loss, concept -> loss, concept -> accuracy), scalars
    """
    if config.in_batch_negatives and labels is None:
        raise ValueError("in_batch_negatives needs the anchors' labels (musicrep.training.sampling.batch_labels)")
    shapes = {c: tuple(b.shape) for c, b in batches.items()}
    per_slot = config.bn_per_slot and len({s[0] for s in shapes.values()}) == 1
    # Slot-major order ([K, B] per concept) when each slot (anchor, positive, each
    # negative, of each concept) gets its own BatchNorm statistics, as separate
    # Keras inputs do; sample-major otherwise.
    x = torch.cat([torch.as_tensor(b).transpose(0, 1).reshape(-1, *b.shape[2:]) if per_slot
                   else torch.as_tensor(b).reshape(-1, *b.shape[2:]) for b in batches.values()])
    x = x.to(device, non_blocking=True)
    slots = sum(s[1] for s in shapes.values()) if per_slot else 1
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.amp):
        emb = model(x, slots=slots) if slots > 1 and model.training else model(x)
    emb = emb.float()  # cosine and hinge in float32 whatever the forward precision
    losses, accs, offset = {}, {}, 0
    for c, (B, K, *_rest) in shapes.items():
        e = emb[offset : offset + B * K]
        e = e.reshape(K, B, -1).transpose(0, 1) if per_slot else e.reshape(B, K, -1)
        offset += B * K
        row_labels = torch.as_tensor(labels[c]) if config.in_batch_negatives else None
        sims, valid = candidate_similarities(e[:, 0], positive=e[:, 1], negatives=e[:, 2:], labels=row_labels)
        losses[c] = concept_loss(sims, valid=valid, concept=c, config=config)
        accs[c] = masked_accuracy(sims.detach(), valid=valid)
    return joint_loss(losses), losses, accs


def train_step(
    net: torch.nn.Module, *, model: Encoder, optimizer: torch.optim.Optimizer, batches: dict[str, torch.Tensor],
    config: TrainConfig, step: int, world: int = 1, device: torch.device = torch.device("cpu"),
    labels: dict[str, np.ndarray] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One optimizer step, as the authors take it: lr decayed to ``step``, L2 on the kernels.

    ``net`` is ``model`` itself or its DDP/compiled wrapper. With the summed loss
    under DDP each rank's loss is multiplied by the world size, so that DDP's
    gradient average is the gradient of the sum over the global batch: a run on
    K processes with batch B each takes the step of one process on K x B.
    Returns what :func:`step_losses` returns (before the scaling and the penalty).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, config=config)
    loss, losses, accs = step_losses(net, batches=batches, config=config, device=device, labels=labels)
    objective = loss * world if config.loss_reduction == "sum" and world > 1 else loss
    if config.l2_conv > 0:
        # once per step, not per rank: DDP averages this part of the gradient over identical copies
        objective = objective + config.l2_conv * sum(w.pow(2).sum() for w in model.conv_kernels())
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    optimizer.step()
    return loss, losses, accs


@torch.no_grad()
def validate(
    model: torch.nn.Module, *, samplers: dict[str, ConceptSampler], config: TrainConfig, d: _Dist
) -> dict[str, float]:
    """Validation loss and accuracy per concept, on the same batches every epoch (averaged over ranks)."""
    model.eval()
    sums: list[float] = []
    for c, sampler in samplers.items():
        loss = acc = 0.0
        for i in range(config.valid_batches):
            one = {c: sampler}
            b = make_batches(one, batch_size=config.batch_size, seed=config.seed, rank=d.rank, step=i)
            lab = batch_labels(one, batch_size=config.batch_size, seed=config.seed, rank=d.rank, step=i) \
                if config.in_batch_negatives else None
            _, ls, ac = step_losses(model, batches={c: torch.from_numpy(b[c])}, config=config, device=d.device, labels=lab)
            loss, acc = loss + float(ls[c]) / config.anchors_per_loss, acc + float(ac[c])
        sums += [loss, acc]
    sums = _all_sum(sums, d)
    model.train()
    n = config.valid_batches * d.world
    out: dict[str, float] = {}
    for k, c in enumerate(samplers):
        out[f"valid_loss_{c}"], out[f"valid_acc_{c}"] = sums[2 * k] / n, sums[2 * k + 1] / n
    out["valid_loss"] = sum(out[f"valid_loss_{c}"] for c in samplers)
    out["valid_acc"] = sum(out[f"valid_acc_{c}"] for c in samplers) / len(samplers)
    return out


def _metric_columns(concepts: tuple[str, ...]) -> list[str]:
    cols = ["epoch", "step", "lr", "train_loss", "valid_loss", "valid_acc"]
    for c in concepts:
        cols += [f"train_loss_{c}", f"train_acc_{c}", f"valid_loss_{c}", f"valid_acc_{c}"]
    return cols + ["seconds", "segments_per_s"]


def _read_metrics(path: Path, upto_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if int(r["epoch"]) <= upto_epoch]


def unresumable_changes(saved: dict, *, config: TrainConfig) -> list[str]:
    """Settings of ``config`` that differ from a run's ``saved`` ones and that a
    resume may not change (all but :data:`RESUMABLE`), sorted."""
    now = to_dict(config)
    # a setting newer than the run has its default there: the behaviour the run was trained with
    defaults = to_dict(TrainConfig())
    return sorted(k for k in now if k not in RESUMABLE and saved.get(k, defaults[k]) != now[k])


def _check_resumable(saved: dict, config: TrainConfig, path: Path) -> None:
    now = to_dict(config)
    # threads: compared as the count the run really used, by _match_arithmetic
    changed = [k for k in unresumable_changes(saved, config=config) if k != "threads"]
    if changed:
        k = changed[0]
        raise ConfigError(f"{path}: cannot resume with {k}={now[k]!r}; the run was started with "
                          f"{k}={saved.get(k)!r}. Only {sorted(RESUMABLE)} may change on resume")


def _tensorboard(out_dir: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(out_dir / "tb"))


def _wrap(model: Encoder, config: TrainConfig, d: _Dist) -> torch.nn.Module:
    """The module the steps call: DDP under several processes, compiled when asked."""
    net: torch.nn.Module = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)  # the checkpoints keep saving the plain module's state_dict
    return net


def _write_run_files(out_dir: Path, splits: dict[str, Split] | None, config: TrainConfig, store, store_path: Path,
                     d: _Dist, mean: float, std: float) -> None:
    """config.yaml, run.json and (for a fresh run) the splits; a fresh run also drops an old DONE."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if splits is not None:
        (out_dir / "DONE").unlink(missing_ok=True)
        write_splits(splits, folder=out_dir / "split")
    save_config(config, path=out_dir / "config.yaml")
    atomic_write_json(out_dir / "run.json", obj={"store": str(Path(store_path).resolve()), "world_size": d.world,
                                             "feature_hash": store.feature_config.hash(),
                                             "normalization": {"mean": mean, "std": std}})


def train_epoch(net: torch.nn.Module, *, model: Encoder, optimizer: torch.optim.Optimizer, stream, state: TrainState,
                config: TrainConfig, d: _Dist, samplers: dict[str, ConceptSampler] | None = None, bar=None) -> dict:
    """``steps_per_epoch`` training steps; advances ``state`` and returns the epoch's training metrics.

    ``samplers`` (the training samplers the stream draws from) give the anchors'
    labels for in-batch negatives.

    Losses are reported per anchor whatever the reduction, so runs with other
    batch sizes or reductions can be compared.
    """
    per_anchor = config.anchors_per_loss
    sums = {c: [0.0, 0.0] for c in config.concepts}
    total = 0.0
    t0 = time.perf_counter()
    for _ in range(config.steps_per_epoch):
        labels = batch_labels(samplers, batch_size=config.batch_size, seed=config.seed, rank=d.rank,
                              step=state.step) if config.in_batch_negatives else None
        loss, losses, accs = train_step(net, model=model, optimizer=optimizer, batches=next(stream), config=config, step=state.step,
                                        world=d.world, device=d.device, labels=labels)
        state.step += 1
        value = loss.item() / per_anchor
        total += value
        for c in config.concepts:
            sums[c][0] += losses[c].item() / per_anchor
            sums[c][1] += accs[c].item()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    seconds = time.perf_counter() - t0
    state.epoch += 1
    # each rank saw its own batches: the epoch's metrics are the mean over ranks
    flat = _all_sum([total] + [v for c in config.concepts for v in sums[c]], d)
    n = config.steps_per_epoch * d.world
    segments = config.batch_size * (2 + config.negatives) * len(config.concepts) * config.steps_per_epoch * d.world
    row = {"epoch": state.epoch, "step": state.step, "lr": optimizer.param_groups[0]["lr"], "train_loss": flat[0] / n,
           "seconds": round(seconds, 3), "segments_per_s": round(segments / seconds, 1)}
    for k, c in enumerate(config.concepts):
        row[f"train_loss_{c}"], row[f"train_acc_{c}"] = flat[1 + 2 * k] / n, flat[2 + 2 * k] / n
    return row


def _save_epoch(out_dir: Path, rows: list[dict], tb, payload: dict, *, config: TrainConfig, improved: bool) -> None:
    """metrics.csv, tensorboard, best.pt (when improved) and last.pt, in that order."""
    atomic_write_csv(out_dir / "metrics.csv", rows=rows, fieldnames=_metric_columns(config.concepts))
    if tb is not None:
        for k, val in rows[-1].items():
            if k not in ("epoch", "step"):
                tb.add_scalar(k, float(val), rows[-1]["step"])
    if improved:
        save_checkpoint(payload, path=out_dir / "best.pt")
    save_checkpoint(payload, path=out_dir / "last.pt")  # last: after best, so resume never skips a best


def _record_weight_spread(model: Encoder, out_dir: Path, d: _Dist) -> None:
    spread = _weight_spread(model, d)
    if spread > 0:
        log.warning("ranks ended with different weights (max difference %.3g)", spread)
    if d.main:
        info = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
        atomic_write_json(out_dir / "run.json", obj={**info, "ddp_max_weight_diff": spread})


# ---------------------------------------------------------------- the loop

def train(store_path: str | Path, *, out_dir: str | Path, config: TrainConfig, resume: bool = False) -> Path:
    """Train an encoder on a feature store; write the run folder.

    Parameters
    ----------
    store_path : a finished feature store (``STORE/``)
    out_dir : the run folder ``RUN/``: config.yaml, split/, metrics.csv, last.pt, best.pt, DONE
    config : the settings
    resume : continue the run in ``out_dir`` from ``last.pt`` (same settings, except
        those in ``RESUMABLE``, e.g. more epochs)

    Returns
    -------
    Path of the run folder
    """
    from ..data.store import FeatureStore

    out_dir = Path(out_dir)
    d = _setup_dist()
    threads = torch.get_num_threads()
    finished = False
    try:
        # one writer per run folder; under DDP the ranks share it and rank 0 holds the lock
        with folder_lock(out_dir) if d.main else contextlib.nullcontext():
            run = _train(FeatureStore(Path(store_path)), Path(store_path), out_dir, config, resume=resume, d=d)
        finished = True
        return run
    except (OSError, RuntimeError) as exc:
        if _disk_full(exc, out_dir):
            raise DiskFullError(f"{out_dir}: the disk is full ({exc}); free some space and rerun with --resume: "
                                "training continues from the last finished epoch") from exc
        raise
    finally:
        torch.set_num_threads(threads)  # the setting is for this run, not for the caller's process
        _end_dist(d, finished=finished)


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


@dataclasses.dataclass
class TrainState:
    """Where a run stands: what ``last.pt`` saves besides the weights and the optimizer."""

    epoch: int = 0
    step: int = 0
    best: float = math.inf
    bad_epochs: int = 0

    def finished(self, config: TrainConfig) -> bool:
        return self.epoch >= config.epochs or self.bad_epochs >= config.patience

    def update(self, value: float, monitor: str) -> bool:
        """Record an epoch's monitored value; True when it is the best so far.

        A non-finite value (a diverged epoch) never counts as an improvement.
        """
        sign = 1.0 if monitor == "valid_loss" else -1.0  # the monitor is minimised as sign * value
        improved = math.isfinite(value) and (not math.isfinite(self.best) or sign * value < sign * self.best)
        if improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return improved


def checkpoint_payload(model: Encoder, *, optimizer: torch.optim.Optimizer, state: TrainState,
                       config: TrainConfig, feature_config, world: int = 1) -> dict:
    """Everything ``last.pt`` / ``best.pt`` hold: weights, optimizer, state, settings, RNG."""
    return {"model": model.state_dict(), "model_config": dataclasses.asdict(model.model_config),
            "feature_config": to_dict(feature_config), "optimizer": optimizer.state_dict(),
            "step": state.step, "epoch": state.epoch, "best_metric": state.best, "bad_epochs": state.bad_epochs,
            "monitor": config.monitor, "config": to_dict(config), "concept": config.concept,
            "rng": {"torch": torch.get_rng_state()},
            # the arithmetic's shape: another thread or process count gives other sums
            "threads": torch.get_num_threads(), "world_size": world}


def _resume_from(out_dir: Path, store, config: TrainConfig, *, resume: bool) -> dict | None:
    """The checkpoint to resume from (None: a fresh run), after checking it fits."""
    last_path = out_dir / "last.pt"
    if not resume:
        if last_path.is_file():
            raise ConfigError(f"{out_dir} already holds a run (last.pt); pass --resume to continue it "
                              "or choose another output folder")
        return None
    if not last_path.is_file():
        log.warning("%s: no last.pt to resume from; starting the run from the beginning", out_dir)
        return None
    ckpt = read_checkpoint(last_path)
    _check_resumable(ckpt["config"], config, last_path)
    if ckpt["feature_config"] != to_dict(store.feature_config):
        raise ConfigError(f"{last_path}: the run was trained on features with other settings than "
                          f"{store.path}'s; resume with the store it was started on")
    return ckpt


def _match_arithmetic(ckpt: dict, config: TrainConfig, d: _Dist, *, out_dir: Path) -> None:
    """Make a resumed run compute as the interrupted one did, or refuse.

    The process count sets the global batch (``batch_size`` is per process) and the
    CPU thread count the order of floating-point sums (a resume on another count
    ended 1.2e-4 away from the uninterrupted weights). A run started with
    ``threads=0`` resumes on the count it really used.
    """
    saved_world = ckpt.get("world_size")
    if saved_world is None:  # checkpoints before the field: run.json has it
        saved_world = _read_json(out_dir / "run.json").get("world_size", 1)
    if saved_world != d.world:
        raise ConfigError(f"{out_dir}: the run was trained by {saved_world} process(es) and this resume has "
                          f"{d.world}; batch_size is per process, so resume with {saved_world} "
                          f"(e.g. torchrun --nproc_per_node {saved_world}) to continue the same run")
    saved_threads = ckpt.get("threads")
    if saved_threads is None or d.device.type != "cpu":
        return
    if config.threads == 0:
        torch.set_num_threads(saved_threads)
    elif config.threads != saved_threads:
        raise ConfigError(f"{out_dir}: the run computed with {saved_threads} CPU thread(s); resuming with "
                          f"threads={config.threads} would change its arithmetic. Resume with "
                          f"--set threads={saved_threads} (or 0, which follows the run)")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _samplers(store, store_path: Path, splits: dict[str, Split], config: TrainConfig):
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


def _train_stream(store, samplers: dict[str, ConceptSampler], specs, *, config: TrainConfig, d: _Dist,
                  start_step: int):
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


def _set_threads(config: TrainConfig, d: _Dist) -> None:
    if config.threads:
        torch.set_num_threads(config.threads)
    elif d.world > 1 and d.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", d.world))))


def _train(store, store_path: Path, out_dir: Path, config: TrainConfig, *, resume: bool, d: _Dist) -> Path:
    # ---- set-up: resume checks, splits, samplers
    if d.main:
        # A kill during a checkpoint write leaves a hidden temp file; only this
        # job writes checkpoints here, so any temp older than now is stale.
        for path in (out_dir / "last.pt", out_dir / "best.pt"):
            remove_stale_temps(path, older_than=time.time())
    _set_threads(config, d)
    ckpt = _resume_from(out_dir, store, config, resume=resume)
    if ckpt is not None:
        _match_arithmetic(ckpt, config, d, out_dir=out_dir)
        if d.main:  # a resumed run (e.g. with more epochs) is unfinished until it ends again
            (out_dir / "DONE").unlink(missing_ok=True)
    # Splits: made once and written beside the run; a resumed run reads them back.
    splits = load_splits(out_dir / "split") if ckpt is not None else make_run_splits(
        catalog=store.catalog, config=config, duplicates=duplicate_groups(store))
    for s in splits.values():
        check_in_catalog(s, catalog=store.catalog)
    if d.main:
        for c in config.concepts:
            log.info("%s", describe_use(concept_split(splits, concept=c), n_catalog=len(store.catalog)))
    train_s, valid_s, specs = _samplers(store, store_path, splits, config)

    # ---- model, normalisation, optimizer
    torch.manual_seed(config.seed)
    model = make_encoder(config, n_mels=store.feature_config.n_mels)
    train_ids = sorted({t for c in config.concepts for t in concept_split(splits, concept=c).track_ids("train")})
    mean, std = store.stats(train_ids)
    model.set_normalization(mean, std)  # training-split statistics travel with the weights
    model.to(d.device)
    optimizer = _make_optimizer(model, config)
    state = TrainState()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = TrainState(ckpt["epoch"], ckpt["step"], ckpt["best_metric"], ckpt["bad_epochs"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        log.info("resuming %s at epoch %d, step %d", out_dir, state.epoch, state.step)
    net = _wrap(model, config, d)
    if d.main:
        _write_run_files(out_dir, splits if ckpt is None else None, config, store, store_path, d, mean, std)
    rows = _read_metrics(out_dir / "metrics.csv", state.epoch) if ckpt is not None else []
    tb = _tensorboard(out_dir, config.tensorboard) if d.main else None

    # ---- the loop: an epoch of steps, validation, metrics, checkpoints
    stream = None if state.finished(config) else _train_stream(store, train_s, specs, config=config, d=d,
                                                               start_step=state.step)
    bar = progress.bar(total=config.epochs * config.steps_per_epoch, initial=state.step, unit="step",
                       desc=f"train {config.concept}") if d.main else contextlib.nullcontext()
    model.train()
    try:
        with bar:
            while not state.finished(config):
                row = train_epoch(net, model=model, optimizer=optimizer, stream=stream, state=state, config=config, d=d, samplers=train_s,
                                  bar=bar if d.main else None)
                _sync_buffers(model, d)
                row.update(validate(model, samplers=valid_s, config=config, d=d))
                rows.append(row)
                improved = state.update(row[config.monitor], config.monitor)
                if d.main:  # one line per epoch, whatever the number of processes
                    log.info("epoch %d: train_loss %.4f valid_loss %.4f valid_acc %.3f%s", state.epoch,
                             row["train_loss"], row["valid_loss"], row["valid_acc"], " (best)" if improved else "")
                if d.main:
                    _save_epoch(out_dir, rows, tb, checkpoint_payload(
                        model, optimizer=optimizer, state=state, config=config, feature_config=store.feature_config, world=d.world),
                        config=config, improved=improved)
                if state.bad_epochs >= config.patience:
                    log.info("early stop: %s did not improve for %d epochs", config.monitor, state.bad_epochs)
    finally:
        if stream is not None:
            stream.close()
        if tb is not None:
            tb.close()
    if d.world > 1:
        _record_weight_spread(model, out_dir, d)
    if not math.isfinite(state.best):
        raise TrainingError(f"{out_dir}: {config.monitor} was never finite in {state.epoch} epoch(s), so there "
                            "is no best model (the run diverged); lower the learning rate and train afresh")
    if d.main:
        atomic_write_text(out_dir / "DONE", text=f"epoch {state.epoch} step {state.step} best {config.monitor} "
                                            f"{state.best:.6g}\n")
    return out_dir
