"""How training batches arrive: made in this process, by a prefetch thread, or by DataLoader workers.

Whichever loader, :func:`batch_stream` yields the batches of
:func:`~musicrep.training.sampling.make_batches` for consecutive steps, so the
choice changes the speed, never the numbers (a batch is a pure function of its
step). Batches gathered on the device are :mod:`musicrep.training.resident`'s.
"""

from __future__ import annotations

import functools
import queue
import threading
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import SplitError
from .sampling import ConceptSampler, SamplerSpec, make_batches


class _WorkerBatches(IterableDataset):
    """The batches of steps ``start, start + 1, ...`` split over a DataLoader's worker processes."""

    def __init__(self, specs: Sequence[SamplerSpec], *, batch_size: int, seed: int, rank: int, start: int) -> None:
        self.specs, self.batch_size, self.seed, self.rank, self.start = specs, batch_size, seed, rank, start

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        samplers = {s.concept: s.build() for s in self.specs}
        step = self.start + wid  # the DataLoader reads its workers in turn: steps stay in order
        while True:
            batches = make_batches(samplers, batch_size=self.batch_size, seed=self.seed, rank=self.rank, step=step)
            yield {c: torch.from_numpy(b) for c, b in batches.items()}
            step += nw


def batch_stream(
    *,
    samplers: dict[str, ConceptSampler],
    specs: Sequence[SamplerSpec] | None = None,
    batch_size: int,
    seed: int,
    rank: int = 0,
    start_step: int = 0,
    num_workers: int = 0,
    prefetch: int = 2,
    pin_memory: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless batches for steps ``start_step, start_step + 1, ...``, the same whichever loader.

    Parameters
    ----------
    samplers : concept -> sampler (used in this process when ``num_workers == 0``)
    specs : picklable specs of the same samplers, for worker processes
    num_workers : 0 builds batches in this process (in a background thread when
        ``prefetch > 0``); K > 0 uses a torch DataLoader with K worker processes
    prefetch : batches kept ready ahead of the model
    pin_memory : worker batches in page-locked memory, for ``non_blocking`` copies to a GPU

    Yields
    ------
    dict concept -> float32 array or tensor [B, 2 + N, T, n_mels]
    """
    if num_workers > 0:
        if not specs:
            raise SplitError("num_workers > 0 needs sampler specs to rebuild the samplers in the workers")
        dataset = _WorkerBatches(specs, batch_size=batch_size, seed=seed, rank=rank, start=start_step)
        yield from DataLoader(dataset, batch_size=None, num_workers=num_workers, prefetch_factor=max(1, prefetch),
                              persistent_workers=False, pin_memory=pin_memory)
        return
    make = functools.partial(make_batches, samplers, batch_size=batch_size, seed=seed, rank=rank)
    if prefetch <= 0:
        step = start_step
        while True:
            yield make(step=step)
            step += 1
    yield from _prefetched(make, start_step=start_step, prefetch=prefetch)


def _prefetched(make: Callable[..., dict[str, np.ndarray]], *, start_step: int,
                prefetch: int) -> Iterator[dict[str, np.ndarray]]:
    """``make(step=s)`` for ``s = start_step, ...``, made ``prefetch`` ahead by a background thread.

    numpy crops and float16 -> float32 copies release the GIL for most of their
    time, so on 2 cores the model barely notices the loader. Closing the
    generator stops the thread.
    """
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    thread = threading.Thread(target=_fill, args=(q, stop, make, start_step), name="musicrep-batches", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _fill(q: queue.Queue, stop: threading.Event, make: Callable[..., dict[str, np.ndarray]], step: int) -> None:
    """The prefetch thread: batches from ``step`` on into ``q`` until ``stop``; an error is handed on too."""
    try:
        while not stop.is_set():
            _put(q, stop, make(step=step))
            step += 1
    except BaseException as exc:  # hand the error to the consumer
        _put(q, stop, exc)


def _put(q: queue.Queue, stop: threading.Event, item: object) -> None:
    """Put ``item`` into ``q`` once there is room, unless ``stop`` is set first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
