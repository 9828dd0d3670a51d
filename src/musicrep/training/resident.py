"""Training batches gathered on the device from frames kept there.

At width 256 a GPU trains far more segments per second than a CPU loader can crop
from a memory-mapped store (~28k segments/s on 2 cores). When the training songs'
log-mels fit in device memory (the paper's 5,000 x 20 MSD songs are ~33 GB in
float16), they are copied there once and every batch is gathered on the device.

The batches are exactly the loader's: the crops are chosen on the host by the same
:meth:`musicrep.training.sampling.ConceptSampler.draw` with the same per-step generator
(:func:`musicrep.training.sampling.batch_rng`), only their frames are read from the device
tensor instead of the store. Resume stays exact and a run gives the same weights
with or without resident frames (tested on CPU tensors).
"""

from __future__ import annotations

import logging
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from ..data.store import FeatureStore
from .sampling import ConceptSampler, batch_rng

log = logging.getLogger(__name__)

#: Share of the device's free memory the frames may take (the model, its
#: activations and the optimizer need the rest).
MEMORY_SHARE = 0.5


class ResidentFrames:
    """The frames of a set of tracks in one float16 tensor on a device.

    Parameters
    ----------
    store : the :class:`~musicrep.data.store.FeatureStore` the samplers read
    track_ids : the tracks to keep (each once)
    device : where the tensor lives
    """

    def __init__(self, *, store: FeatureStore, track_ids: Sequence[str], device: torch.device):
        self.track_ids = list(dict.fromkeys(track_ids))
        self.position = {t: i for i, t in enumerate(self.track_ids)}
        lengths = np.array([store.n_frames(t) for t in self.track_ids], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        n_mels = store.feature_config.n_mels
        host = np.empty((int(lengths.sum()), n_mels), dtype=np.float16)
        for t, off, n in zip(self.track_ids, offsets, lengths):
            host[off : off + n] = store.frames(t)  # float32 of the stored float16: exact
        self.device = device
        self.frames = torch.from_numpy(host).to(device)
        self.offsets = torch.from_numpy(offsets).to(device)

    @staticmethod
    def nbytes(*, store: FeatureStore, track_ids: Sequence[str]) -> int:
        """Device bytes the frames of ``track_ids`` would take."""
        ids = dict.fromkeys(track_ids)
        return sum(store.n_frames(t) for t in ids) * store.feature_config.n_mels * 2

    def gather(self, positions: np.ndarray, starts: np.ndarray, length: int) -> torch.Tensor:
        """Crops as float32 [*positions.shape, length, n_mels] on the device.

        ``positions`` index :attr:`track_ids`; ``starts`` are the crops' first frames.
        """
        base = self.offsets[torch.from_numpy(positions).to(self.device)] + torch.from_numpy(starts).to(self.device)
        index = base.unsqueeze(-1) + torch.arange(length, device=self.device)
        return self.frames[index].float()


def fits(*, store: FeatureStore, track_ids: Sequence[str], device: torch.device) -> bool:
    """Whether the frames of ``track_ids`` fit in :data:`MEMORY_SHARE` of the device's free memory."""
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return ResidentFrames.nbytes(store=store, track_ids=track_ids) <= MEMORY_SHARE * free


def resident_stream(
    *,
    samplers: Mapping[str, ConceptSampler],
    frames: ResidentFrames,
    batch_size: int,
    seed: int,
    rank: int = 0,
    start_step: int = 0,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches for steps ``start_step, start_step + 1, ...``: concept ->
    float32 [B, 2 + N, T, n_mels] on ``frames.device``, equal to
    :func:`musicrep.training.sampling.make_batches`'s for the same steps."""
    to_resident = {c: np.array([frames.position[t] for t in s.track_ids], dtype=np.int64) for c, s in samplers.items()}
    step = start_step
    while True:
        out = {}
        for c, s in samplers.items():
            tracks, starts = s.draw(batch_size=batch_size,
                                    rng=batch_rng(seed=seed, rank=rank, concept=c, mode=s.mode, step=step))
            out[c] = frames.gather(to_resident[c][tracks], starts, s.segment_frames)
        yield out
        step += 1
