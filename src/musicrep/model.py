"""The encoder of Park et al. (ISMIR 2018), widened as in Lee, Park & Nam (2019).

A 1-D CNN over time with the mel bands as input channels::

    [B, T=129, 128] log-mel (as stored)
      -> standardise with the training set's scalar mean / std (buffers)
      -> transpose to [B, 128, T]
      -> Conv1d(k=4, same) - BN - ReLU - MaxPool(4)      x3   (129 -> 32 -> 8 -> 2)
      -> Conv1d(k=2, same) - BN - ReLU - MaxPool(2)            (2 -> 1)
      -> Conv1d(k=1) - BN - ReLU with 2 x width channels
      -> global average pool over time -> [B, 2 x width]

``width=256`` (the default) gives the 2019 paper's 512-d embedding ("twice the
filters"); ``width=128`` gives the 2018 model's 256-d embedding. "Same" padding
is what lets 129 frames shrink to one step through pools of 4, 4, 4 and 2.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    width: int = dataclasses.field(default=256, metadata={"min": 1})
    n_mels: int = dataclasses.field(default=128, metadata={"min": 1})

    @property
    def embedding_dim(self) -> int:
        return 2 * self.width


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, pool: int):
        # Keras-style "same" padding (left = (k-1)//2): explicit, because torch's
        # padding="same" with an even kernel copies the input with a warning.
        left = (kernel - 1) // 2
        layers: list[nn.Module] = [
            nn.ConstantPad1d((left, kernel - 1 - left), 0.0),
            nn.Conv1d(c_in, c_out, kernel, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
        ]
        if pool > 1:
            layers.append(nn.MaxPool1d(pool))
        super().__init__(*layers)


class Encoder(nn.Module):
    """Log-mel segments -> embeddings.

    Parameters
    ----------
    width : channels of the first four convolutions; the embedding has 2 x width
    n_mels : mel bands of the input

    ``forward(x)`` takes ``x`` of shape [B, T, n_mels] (frames first, as the
    feature store holds them, *not* standardised) and returns [B, 2 x width].
    """

    def __init__(self, width: int = 256, n_mels: int = 128):
        super().__init__()
        if width < 1 or n_mels < 1:
            raise ConfigError(f"width={width} and n_mels={n_mels} must be positive")
        self.width = width
        self.n_mels = n_mels
        self.features = nn.Sequential(
            _Block(n_mels, width, 4, 4),
            _Block(width, width, 4, 4),
            _Block(width, width, 4, 4),
            _Block(width, width, 2, 2),
            _Block(width, 2 * width, 1, 1),
        )
        # Scalar standardisation from the training set, saved with the weights so
        # that every consumer (embed, export, evaluate) applies the same one.
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    @property
    def embedding_dim(self) -> int:
        return 2 * self.width

    def set_normalization(self, mean: float, std: float) -> None:
        if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
            raise ConfigError(f"normalisation needs a finite mean and a positive std, got {mean}, {std}")
        self.mean.fill_(float(mean))
        self.std.fill_(float(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise ValueError(f"expected [batch, frames, {self.n_mels}], got {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        x = x.transpose(1, 2)
        x = self.features(x)
        return x.mean(dim=-1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last axis (broadcasts)."""
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def split_segments(frames: np.ndarray, segment_frames: int = 129) -> np.ndarray:
    """Non-overlapping segments of a track.

    Parameters
    ----------
    frames : np.ndarray [shape=(T, n_mels)]
    segment_frames : frames per segment

    Returns
    -------
    np.ndarray [shape=(T // segment_frames, segment_frames, n_mels)]
        The trailing partial segment is dropped. A track shorter than one
        segment raises ``ValueError`` (the store never holds one).
    """
    n = frames.shape[0] // segment_frames
    if n == 0:
        raise ValueError(f"{frames.shape[0]} frames is shorter than one segment of {segment_frames}")
    return frames[: n * segment_frames].reshape(n, segment_frames, frames.shape[1])


@torch.no_grad()
def embed_segments(encoder: Encoder, segments: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Embeddings of segments [S, T, n_mels] -> float32 [S, D], in eval mode."""
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        for i in range(0, len(segments), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(segments[i : i + batch_size], dtype=np.float32))
            out.append(encoder(batch).numpy())
    finally:
        encoder.train(was_training)
    if not out:
        return np.zeros((0, encoder.embedding_dim), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def song_embedding(encoder: Encoder, frames: np.ndarray, *, segment_frames: int = 129) -> np.ndarray:
    """The paper's song embedding: mean of the non-overlapping segments' embeddings [D]."""
    return embed_segments(encoder, split_segments(frames, segment_frames)).mean(axis=0)
