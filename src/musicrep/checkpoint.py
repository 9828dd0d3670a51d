"""Checkpoints: plain dicts of tensors and JSON-able values, written atomically.

A checkpoint (``RUN/last.pt``, ``RUN/best.pt``) holds, per docs/architecture.md::

    {"model": state_dict, "model_config": {...}, "feature_config": {...},
     "optimizer": ..., "step": int, "epoch": int, "best_metric": float,
     "config": {...}, "concept": str, ...}

plus ``"digest"``: a SHA-256 over every tensor's bytes and every value, checked
on load, because ``torch.load`` happily returns flipped bits from a damaged
file. Everything is read back with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from .config import FeatureConfig
from .errors import CheckpointError, ConfigError
from .io import atomic_path
from .model import Encoder, ModelConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def _digest(obj: Any) -> str:
    h = hashlib.sha256()

    def walk(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            h.update(b"{")
            for k in sorted(x, key=repr):
                h.update(repr(k).encode())
                walk(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                walk(v)
            h.update(b"]")
        else:
            h.update(repr(x).encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write ``payload`` (plus its digest) to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    body = {k: v for k, v in payload.items() if k != "digest"}
    body["format_version"] = FORMAT_VERSION
    body["digest"] = _digest(body)
    with atomic_path(path) as tmp:
        torch.save(body, tmp)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with ``weights_only=True`` and verify its digest.

    Raises
    ------
    CheckpointError
        when the file is missing, truncated, not a checkpoint, or its contents
        do not match the digest written with it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, OSError, UnpicklingError, EOFError ...
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc}); "
                              "it is truncated or corrupt: retrain or use the other checkpoint") from None
    if not isinstance(payload, dict) or "model" not in payload or "digest" not in payload:
        raise CheckpointError(f"{path}: not a musicrep checkpoint (no model or digest entry)")
    body = {k: v for k, v in payload.items() if k != "digest"}
    if _digest(body) != payload["digest"]:
        raise CheckpointError(f"{path}: checkpoint contents do not match their digest: the file was "
                              "modified or damaged; retrain or use the other checkpoint")
    return payload


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What a loaded checkpoint says about itself."""

    path: Path
    concept: str
    feature_config: FeatureConfig
    model_config: ModelConfig
    config: dict
    epoch: int
    step: int
    best_metric: float


def resolve(run_or_checkpoint: str | Path, *, which: str = "best") -> Path:
    """The checkpoint file for a run folder (``best.pt`` or ``last.pt``) or a file path."""
    if which not in ("best", "last"):
        raise ConfigError(f"which={which!r} must be 'best' or 'last'")
    p = Path(run_or_checkpoint)
    if p.is_dir():
        p = p / f"{which}.pt"
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found; give a run folder with {which}.pt or a .pt file")
    return p


def load_encoder(run_or_checkpoint: str | Path, *, which: str = "best") -> tuple[Encoder, CheckpointInfo]:
    """An :class:`~musicrep.model.Encoder` in eval mode, with its normalisation, and its info.

    Parameters
    ----------
    run_or_checkpoint : a run folder ``RUN/`` or a ``.pt`` file
    which : "best" or "last", when a run folder is given

    Raises
    ------
    CheckpointError
        when the checkpoint is missing, truncated, tampered with, or does not fit the encoder.
    """
    path = resolve(run_or_checkpoint, which=which)
    payload = read_checkpoint(path)
    try:
        # A checkpoint from before conv_bias/bn_eps were recorded had PyTorch's values.
        model_config = ModelConfig(**{**ModelConfig.LEGACY, **payload["model_config"]})
        feature_config = FeatureConfig(**payload["feature_config"])
        encoder = Encoder(width=model_config.width, n_mels=model_config.n_mels, conv_bias=model_config.conv_bias,
                          bn_eps=model_config.bn_eps)
        encoder.load_state_dict(payload["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not describe an encoder ({type(exc).__name__}: {exc})") from None
    encoder.eval()
    info = CheckpointInfo(
        path=path,
        concept=str(payload.get("concept", "")),
        feature_config=feature_config,
        model_config=model_config,
        config=json.loads(json.dumps(payload.get("config", {}))),
        epoch=int(payload.get("epoch", 0)),
        step=int(payload.get("step", 0)),
        best_metric=float(payload.get("best_metric", float("nan"))),
    )
    return encoder, info
