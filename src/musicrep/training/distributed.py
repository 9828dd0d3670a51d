"""One training run on one or several processes: the rank and device, the DDP wrap, the collectives.

Under ``torchrun --nproc_per_node K`` each process is one rank of a gloo (CPU) or
nccl (GPU) process group; alone it is rank 0 of a world of 1, and every function
here then does nothing (or the plain thing).
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist

from .model import Encoder
from .settings import TrainConfig


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place in the run: its rank among ``world`` processes and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes every file."""
        return self.rank == 0


def setup_dist() -> Dist:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return Dist(device=torch.device("cuda" if cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local, device=device)


def end_dist(d: Dist, *, finished: bool) -> None:
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


def set_threads(config: TrainConfig, *, d: Dist) -> None:
    """torch's CPU threads for the run: ``config.threads``, or the cores shared among the local ranks."""
    if config.threads:
        torch.set_num_threads(config.threads)
    elif d.world > 1 and d.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", d.world))))


def wrap(model: Encoder, *, config: TrainConfig, d: Dist) -> torch.nn.Module:
    """The module the steps call: DDP under several processes, compiled when asked."""
    net: torch.nn.Module = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)  # the checkpoints keep saving the plain module's state_dict
    return net


def all_sum(values: list[float], *, d: Dist) -> list[float]:
    """``values`` summed over the ranks (float64), element by element."""
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def sync_buffers(model: torch.nn.Module, *, d: Dist) -> None:
    """BatchNorm running stats from rank 0: DDP syncs them before a forward, not after it."""
    if d.world > 1:
        for b in model.buffers():
            dist.broadcast(b.data, src=0)


def weight_spread(model: torch.nn.Module) -> float:
    """Largest difference of any weight or buffer between rank 0 and the other ranks (under DDP only)."""
    flat = torch.cat([t.detach().double().reshape(-1) for t in model.state_dict().values()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = torch.tensor([float((flat - ref).abs().max())], dtype=torch.float64, device=flat.device)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)
