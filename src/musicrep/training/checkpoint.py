"""Checkpoints: plain dicts of tensors and JSON-able values, written atomically.

A checkpoint (``RUN/last.pt``, ``RUN/best.pt``) holds, per docs/architecture.md::

    {"model": state_dict, "model_config": {...}, "feature_config": {...},
     "optimizer": ..., "step": int, "epoch": int, "best_metric": float,
     "config": {...}, "concept": str, ...}

plus ``"digest"``: a SHA-256 over every tensor's bytes and every value, checked
on load, because ``torch.load`` happily returns flipped bits from a damaged
file. Everything is read back with ``torch.load(..., weights_only=True)``.

A digest proves only that the file was not changed *after* it was written: one
rewritten with a recomputed digest passes it. :func:`load_encoder` therefore
also validates every header field it uses with the range checks of the settings
themselves (:class:`~musicrep.config.FeatureConfig`,
:class:`~musicrep.training.model.ModelConfig`, :class:`~musicrep.training.settings.TrainConfig`),
checks the weights' shapes against ``model_config`` *before* building the
encoder (a huge ``width`` would otherwise allocate until ``MemoryError``), and
checks that the weights and the normalisation are finite.

Unfinished runs: :func:`musicrep.training.train.train` writes ``config.yaml`` and
``run.json`` into a run folder before its first checkpoint and ``DONE`` after
its last. A run killed after epoch 1 still has a ``best.pt``; every command
loads models through :func:`load_encoder`, which refuses a checkpoint of a run
without ``DONE`` unless ``allow_unfinished=True`` (``--allow-unfinished``),
and then says so in :attr:`CheckpointInfo.unfinished`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from ..config import FeatureConfig, _from_dict
from ..errors import CheckpointError, ConfigError
from ..io import atomic_path
from .model import Encoder, ModelConfig
from .settings import TrainConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: written by training into a run folder before its first checkpoint: a folder
#: holding one of them is a training run, not a folder a checkpoint was copied into
RUN_FILES: tuple[str, ...] = ("config.yaml", "run.json")
#: written by training last, when the run finished
DONE = "DONE"


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


def save_checkpoint(payload: dict, *, path: str | Path) -> Path:
    """Write ``payload`` (plus its digest) to ``path`` atomically (temp file + rename).

    The same payload gives the same bytes: ``torch.save`` to a file names the
    archive's inner folder after the (random) temp file, so it saves to memory.
    """
    path = Path(path)
    body = {k: v for k, v in payload.items() if k != "digest"}
    body["format_version"] = FORMAT_VERSION
    body["digest"] = _digest(body)
    buffer = io.BytesIO()
    torch.save(body, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
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
    #: the training run folder the checkpoint belongs to (None: a checkpoint kept elsewhere)
    run_dir: Path | None = None
    #: the run has no ``DONE``: its training did not finish (loaded with ``allow_unfinished``)
    unfinished: bool = False


def training_run(run_or_checkpoint: str | Path) -> Path | None:
    """The training run folder of a run folder or checkpoint file, or None.

    A folder counts as a training run when it holds one of :data:`RUN_FILES`,
    which training writes before its first checkpoint; a checkpoint copied into
    a folder of its own is not part of a run.
    """
    p = Path(run_or_checkpoint)
    if p.is_dir():
        folder = p
    elif p.is_file() or p.suffix == ".pt":
        folder = p.parent
    else:
        return None  # neither a folder nor a checkpoint: resolve() names it
    return folder if any((folder / name).exists() for name in RUN_FILES) else None


def unfinished_run(run_or_checkpoint: str | Path) -> Path | None:
    """The run folder when ``run_or_checkpoint`` belongs to a run without ``DONE``, else None."""
    run = training_run(run_or_checkpoint)
    return run if run is not None and not (run / DONE).is_file() else None


def unfinished_message(run: Path, *, which: str = "best") -> str:
    """The refusal of an unfinished run: what happened and the two ways on."""
    return (f"{run} has no {DONE}: training did not finish (resume it with `musicrep train --store STORE "
            f"-o {run} --resume` and its settings), or pass --allow-unfinished to use its {which}.pt as it is")


def unfinished_warning(info: "CheckpointInfo") -> str:
    """The warning line printed with every result of an unfinished run."""
    return (f"{info.run_dir} did not finish training (no {DONE}): its results come from {info.path.name} "
            f"of epoch {info.epoch}, not from a finished run")


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


def load_encoder(
    run_or_checkpoint: str | Path, *, which: str = "best", allow_unfinished: bool = False
) -> tuple[Encoder, CheckpointInfo]:
    """An :class:`~musicrep.training.model.Encoder` in eval mode, with its normalisation, and its info.

    Every command that uses a trained model loads it here, so the checks below
    hold for all of them.

    Parameters
    ----------
    run_or_checkpoint : a run folder ``RUN/`` or a ``.pt`` file
    which : "best" or "last", when a run folder is given
    allow_unfinished : use the checkpoint of a run without ``DONE`` (killed or
        still training) instead of refusing it; ``info.unfinished`` says so

    Raises
    ------
    CheckpointError
        when the checkpoint is missing, truncated, tampered with, has a header
        field out of range (the message names the file and the field), does
        not fit the encoder, or belongs to an unfinished run (see above).
    """
    # before anything is read: a run killed after epoch 1 has a whole, valid best.pt
    run_dir = training_run(run_or_checkpoint)
    unfinished = run_dir is not None and not (run_dir / DONE).is_file()
    if unfinished and not allow_unfinished:
        p = Path(run_or_checkpoint)
        raise CheckpointError(unfinished_message(run_dir, which=p.stem if p.suffix == ".pt" else which))
    path = resolve(run_or_checkpoint, which=which)
    payload = read_checkpoint(path)
    header = _check_header(payload, path)
    model_config = header["model_config"]
    try:
        encoder = Encoder(width=model_config.width, n_mels=model_config.n_mels, conv_bias=model_config.conv_bias,
                          bn_eps=model_config.bn_eps)
        encoder.load_state_dict(payload["model"])
    except (KeyError, TypeError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not describe an encoder ({type(exc).__name__}: {exc})") from None
    encoder.eval()
    info = CheckpointInfo(path=path, run_dir=run_dir, unfinished=unfinished, **{
        k: header[k] for k in ("concept", "feature_config", "model_config", "config", "epoch", "step", "best_metric")})
    if unfinished:
        log.warning("%s", unfinished_warning(info))
    return encoder, info


def _header_error(path: Path, field: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: header field {field} {problem}; the checkpoint was edited or damaged: "
                           "retrain, or use the run's other checkpoint")


def _check_header(payload: dict, path: Path) -> dict[str, Any]:
    """The header fields :func:`load_encoder` uses, each validated; raises naming the field.

    Settings go through the very validation of their dataclasses (``_from_dict``:
    types and declared ranges), then through what those ranges cannot say:
    finite numbers, the front end's band limits, and weights whose shapes are
    the ones ``model_config`` promises.
    """
    out = _check_settings(payload, path)
    fc, mc = out["feature_config"], out["model_config"]
    top = fc.sample_rate / 2 if fc.fmax is None else fc.fmax
    if not fc.fmin < top <= fc.sample_rate / 2:
        raise _header_error(path, "feature_config.fmax", f"gives the band {fc.fmin}-{top} Hz, which must lie in "
                            f"0-{fc.sample_rate / 2} Hz (half the sample rate) with fmin < fmax")
    if fc.n_mels != mc.n_mels:
        raise _header_error(path, "feature_config.n_mels", f"is {fc.n_mels} but model_config.n_mels is {mc.n_mels}")
    _check_weights(payload.get("model"), mc, path)
    out.update(_check_progress(payload, path))
    out.update(_check_train_config(payload, path))
    return out


def _check_settings(payload: dict, path: Path) -> dict[str, Any]:
    """``model_config`` and ``feature_config`` as their dataclasses, validated, every float finite."""
    out: dict[str, Any] = {}
    # a checkpoint from before conv_bias/bn_eps were recorded had PyTorch's values
    settings = (("model_config", ModelConfig, ModelConfig.LEGACY), ("feature_config", FeatureConfig, {}))
    for field, cls, legacy in settings:
        value = payload.get(field)
        if not isinstance(value, dict):
            raise _header_error(path, field, f"is {type(value).__name__}, not a mapping of settings")
        try:
            out[field] = _from_dict(cls, {**legacy, **value}, prefix=f"{field}.")
        except ConfigError as exc:
            raise _header_error(path, field, f"is invalid ({exc})") from None
        for f in dataclasses.fields(cls):  # NaN passes every range comparison
            x = getattr(out[field], f.name)
            if isinstance(x, float) and not math.isfinite(x):
                raise _header_error(path, f"{field}.{f.name}", f"is {x}, not a finite number")
    return out


def _check_progress(payload: dict, path: Path) -> dict[str, Any]:
    """``epoch``, ``step`` (counts) and ``best_metric`` (a number), validated."""
    out: dict[str, Any] = {}
    for field in ("epoch", "step"):
        value = payload.get(field, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _header_error(path, field, f"is {value!r}, not a count >= 0")
        out[field] = value
    best = payload.get("best_metric", float("nan"))  # inf before the first finite validation: allowed
    if not isinstance(best, (int, float)) or isinstance(best, bool):
        raise _header_error(path, "best_metric", f"is {best!r}, not a number")
    out["best_metric"] = float(best)
    return out


def _check_train_config(payload: dict, path: Path) -> dict[str, Any]:
    """``config`` (the run's settings, as JSON values) and ``concept``, validated as :class:`TrainConfig` ones."""
    config = payload.get("config", {})
    if not isinstance(config, dict):
        raise _header_error(path, "config", f"is {type(config).__name__}, not a mapping of settings")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    concept = payload.get("concept", "")
    try:
        # settings this version knows are checked like a config file; one it no
        # longer knows (a renamed setting of an older run) changes nothing here
        _from_dict(TrainConfig, {k: v for k, v in config.items() if k in known}, prefix="config.")
        if not isinstance(concept, str):
            raise ConfigError(f"concept={concept!r} is not a string")
        if concept:
            _from_dict(TrainConfig, {"concept": concept})
    except ConfigError as exc:
        field = "concept" if str(exc).startswith("concept") else "config"
        raise _header_error(path, field, f"is invalid ({exc})") from None
    return {"config": json.loads(json.dumps(config)), "concept": concept}


def _check_weights(state: Any, mc: ModelConfig, path: Path) -> None:
    """Weights whose first and last convolutions have the shapes ``mc`` says, all finite.

    Checked before an :class:`Encoder` is built: its size comes from ``mc``,
    and an edited width of 10^9 would allocate until ``MemoryError``.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _header_error(path, "model", "is not a mapping of weight tensors")
    expect = {"features.0.1.weight": (mc.width, mc.n_mels, 4), "features.4.1.weight": (2 * mc.width, mc.width, 1)}
    for key, shape in expect.items():
        got = tuple(state[key].shape) if key in state else None
        if got != shape:
            raise _header_error(path, "model_config", f"(width={mc.width}, n_mels={mc.n_mels}) does not fit the "
                                f"weights: {key} is {got}, expected {shape}")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _header_error(path, f"model.{key}", "holds NaN or infinite values (a diverged run?)")
    std = state.get("std")
    if std is not None and not bool((std > 0).all()):
        raise _header_error(path, "model.std", f"is {std.tolist()}, not a positive normalisation")
