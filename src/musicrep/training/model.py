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

The defaults are the authors' Keras code (``ismir2018-artist``): convolutions
with a bias, ``he_uniform`` kernels (U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))),
zero biases, and Keras BatchNorm constants (epsilon 1e-3, moving-average
momentum 0.99, which is torch's ``momentum=0.01``). ``init="torch"``,
``conv_bias=False``, ``bn_eps=1e-5`` and ``bn_momentum=0.1`` give PyTorch's own.

Per-slot batch statistics: in the authors' Siamese model the anchor, the
positive and each negative pass the shared layers as separate inputs, so each
slot is normalised with its own batch statistics. ``forward(x, slots=S)`` does
the same in one pass: ``x`` holds S equal groups, one after the other, and in
training mode every BatchNorm normalises each group with that group's
statistics (and updates its running averages once per group, in order, as
S separate Keras calls would).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import SEGMENT_FRAMES, setting
from ..errors import ConfigError, InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What an encoder's weights need to be rebuilt (saved in every checkpoint)."""

    width: int = setting(256, min=1)
    n_mels: int = setting(128, min=1)
    conv_bias: bool = True
    bn_eps: float = setting(1e-3, min=0.0, min_exclusive=True)

    #: the values of checkpoints written before these settings existed
    LEGACY = {"conv_bias": False, "bn_eps": 1e-5}

    @property
    def embedding_dim(self) -> int:
        return 2 * self.width


INITS: tuple[str, ...] = ("he_uniform", "torch")


class SlotBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that, in training mode, can normalise S equal groups of the batch apart.

    ``slots`` is set by :meth:`Encoder.forward` before each pass. With
    ``slots == 1`` (and always in eval mode) this is ``nn.BatchNorm1d``.
    """

    slots: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.slots <= 1:
            return super().forward(x)
        S = self.slots
        n, c, t = x.shape
        if n % S:
            raise InvalidArgumentError(f"a batch of {n} cannot be cut into {S} equal slots")
        g = x.reshape(S, n // S, c, t)
        mean = g.mean(dim=(1, 3), keepdim=True)
        var = g.var(dim=(1, 3), unbiased=False, keepdim=True)
        y = (g - mean) * torch.rsqrt(var + self.eps)
        y = y * self.weight[None, None, :, None] + self.bias[None, None, :, None]
        if self.track_running_stats:
            with torch.no_grad():
                count = (n // S) * t
                unbiased = var.reshape(S, c) * (count / max(count - 1, 1))
                m = self.momentum if self.momentum is not None else 0.1
                for k in range(S):  # one update per slot, in order, as S separate calls would
                    self.running_mean.mul_(1 - m).add_(mean.reshape(S, c)[k].to(self.running_mean.dtype), alpha=m)
                    self.running_var.mul_(1 - m).add_(unbiased[k].to(self.running_var.dtype), alpha=m)
                self.num_batches_tracked.add_(S)
        return y.reshape(n, c, t)


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, pool: int, *, bias: bool, eps: float, momentum: float):
        # Keras-style "same" padding (left = (k-1)//2): explicit, because torch's
        # padding="same" with an even kernel copies the input with a warning.
        left = (kernel - 1) // 2
        layers: list[nn.Module] = [
            nn.ConstantPad1d((left, kernel - 1 - left), 0.0),
            nn.Conv1d(c_in, c_out, kernel, bias=bias),
            SlotBatchNorm1d(c_out, eps=eps, momentum=momentum),
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
    conv_bias : convolutions with a bias (the authors' Keras layers have one)
    bn_eps, bn_momentum : BatchNorm epsilon and running-average momentum in
        torch's convention (Keras 1e-3 and 0.99 -> 1e-3 and 0.01)
    init : "he_uniform" (the authors') or "torch" (PyTorch's default)

    ``forward(x, slots=1)`` takes ``x`` of shape [B, T, n_mels] (frames first, as
    the feature store holds them, *not* standardised) and returns [B, 2 x width];
    ``slots`` > 1 gives each of that many equal consecutive groups its own
    BatchNorm statistics in training mode (see the module docstring).
    """

    def __init__(self, width: int = 256, n_mels: int = 128, *, conv_bias: bool = True, bn_eps: float = 1e-3,
                 bn_momentum: float = 0.01, init: str = "he_uniform"):
        super().__init__()
        if width < 1 or n_mels < 1:
            raise ConfigError(f"width={width} and n_mels={n_mels} must be positive")
        if init not in INITS:
            raise ConfigError(f"init={init!r} is not one of {list(INITS)}")
        if not bn_eps > 0 or not 0 < bn_momentum <= 1:
            raise ConfigError(f"bn_eps={bn_eps} must be > 0 and bn_momentum={bn_momentum} in (0, 1]")
        self.width = width
        self.n_mels = n_mels
        self.conv_bias = conv_bias
        self.bn_eps = bn_eps
        kw = {"bias": conv_bias, "eps": bn_eps, "momentum": bn_momentum}
        self.features = nn.Sequential(
            _Block(n_mels, width, 4, 4, **kw),
            _Block(width, width, 4, 4, **kw),
            _Block(width, width, 4, 4, **kw),
            _Block(width, width, 2, 2, **kw),
            _Block(width, 2 * width, 1, 1, **kw),
        )
        if init == "he_uniform":
            for m in self.modules():
                if isinstance(m, nn.Conv1d):
                    # Keras he_uniform: U(-sqrt(6 / fan_in), sqrt(6 / fan_in)), fan_in = c_in * k
                    nn.init.kaiming_uniform_(m.weight, a=0.0, mode="fan_in", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        # Scalar standardisation from the training set, saved with the weights so
        # that every consumer (embed, export, evaluate) applies the same one.
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    @property
    def embedding_dim(self) -> int:
        return 2 * self.width

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig(width=self.width, n_mels=self.n_mels, conv_bias=self.conv_bias, bn_eps=self.bn_eps)

    def conv_kernels(self) -> list[torch.Tensor]:
        """The convolution kernels (what the authors' L2 penalty is put on)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Conv1d)]

    def set_normalization(self, mean: float, std: float) -> None:
        if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
            raise ConfigError(f"normalisation needs a finite mean and a positive std, got {mean}, {std}")
        self.mean.fill_(float(mean))
        self.std.fill_(float(std))

    def forward(self, x: torch.Tensor, slots: int = 1) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.n_mels:
            raise InvalidArgumentError(f"expected [batch, frames, {self.n_mels}], got {tuple(x.shape)}")
        for m in self.features.modules():
            if isinstance(m, SlotBatchNorm1d):
                m.slots = slots
        x = (x - self.mean) / self.std
        x = x.transpose(1, 2)
        x = self.features(x)
        return x.mean(dim=-1)


def cosine(a: torch.Tensor, *, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last axis (broadcasts)."""
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def split_segments(frames: np.ndarray, *, segment_frames: int = SEGMENT_FRAMES) -> np.ndarray:
    """Non-overlapping segments of a track.

    Parameters
    ----------
    frames : np.ndarray [shape=(T, n_mels)]
    segment_frames : frames per segment

    Returns
    -------
    np.ndarray [shape=(T // segment_frames, segment_frames, n_mels)]
        The trailing partial segment is dropped. A track shorter than one
        segment raises :class:`~musicrep.errors.InvalidArgumentError`, a ``ValueError``
        (the store never holds one).
    """
    n = frames.shape[0] // segment_frames
    if n == 0:
        raise InvalidArgumentError(f"{frames.shape[0]} frames is shorter than one segment of {segment_frames}")
    return frames[: n * segment_frames].reshape(n, segment_frames, frames.shape[1])


def encode_segments(encoder: Encoder, *, segments: np.ndarray | torch.Tensor, batch_size: int = 256,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Embeddings of raw log-mel segments [S, T, n_mels] -> float32 tensor [S, D] on ``device``.

    ``batch_size`` segments per forward pass, each batch converted and moved on its
    own (a long file's segments are never copied whole). Eval mode (BatchNorm
    running statistics) for the call only: an encoder lent by a training loop, or
    moved by an evaluation harness that never calls ``.eval()``, goes back in the
    mode it came in. ``device``: where the batches go (the encoder's own by default).
    """
    if device is None:
        device = next(encoder.parameters()).device

    def batch(i: int) -> torch.Tensor:
        part = segments[i : i + batch_size]
        if not isinstance(part, torch.Tensor):
            part = torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32))
        return part.to(device, torch.float32)

    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            out = [encoder(batch(i)).float() for i in range(0, len(segments), batch_size)]
    finally:
        encoder.train(was_training)
    if not out:
        return torch.zeros((0, encoder.embedding_dim), dtype=torch.float32, device=device)
    return torch.cat(out)


def embed_segments(encoder: Encoder, *, segments: np.ndarray, batch_size: int = 256,
                   device: torch.device | str | None = None) -> np.ndarray:
    """:func:`encode_segments` as a float32 array [S, D] on the CPU."""
    return encode_segments(encoder, segments=segments, batch_size=batch_size, device=device).cpu().numpy()


def song_embedding(encoder: Encoder, *, frames: np.ndarray, segment_frames: int = SEGMENT_FRAMES) -> np.ndarray:
    """The paper's song embedding: mean of the non-overlapping segments' embeddings [D]."""
    return embed_segments(encoder, segments=split_segments(frames, segment_frames=segment_frames)).mean(axis=0)
