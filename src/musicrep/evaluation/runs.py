"""Trained runs as the evaluation, report and inference commands open them.

A run folder (``RUN/``) holds ``config.yaml``, ``run.json`` (the store it
trained on), ``split/``, the checkpoints and ``DONE``; :mod:`musicrep.training.checkpoint`
reads the checkpoints (with the ``DONE`` check), this module opens runs (each
checkpoint once per process), names them and finds their stores, once for every command.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import NamedTuple, Sequence

from ..errors import CheckpointError, ConfigError
from ..training.checkpoint import (
    CheckpointInfo,
    load_encoder,
    resolve,
    training_run,
    unfinished_run,
    unfinished_warning,
)
from ..training.model import Encoder

log = logging.getLogger(__name__)

#: models loaded in this process, keyed by :func:`_checkpoint_key`
_LOADED: dict[tuple[str, int, int, bool], tuple[Encoder, CheckpointInfo]] = {}


def _checkpoint_key(run: str | Path, *, which: str) -> tuple[str, int, int, bool] | None:
    """``(resolved checkpoint path, st_mtime_ns, st_size, unfinished)``; None when there is no
    checkpoint to stat (:func:`~musicrep.training.checkpoint.load_encoder` then names the problem)."""
    try:
        path = resolve(run, which=which)
        stat = path.stat()
    except (CheckpointError, ConfigError, OSError):
        return None
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size, unfinished_run(run) is not None


def load_run_model(
    run: str | Path, *, which: str = "best", allow_unfinished: bool = False
) -> tuple[Encoder, CheckpointInfo]:
    """``(Encoder in eval mode, CheckpointInfo)`` of a run folder or checkpoint file.

    A run without ``DONE`` (training killed or still going) is refused with a
    :class:`~musicrep.errors.CheckpointError` unless ``allow_unfinished``; then
    ``info.unfinished`` is True (see :func:`musicrep.training.checkpoint.load_encoder`,
    through which every command loads its models). ``DONE`` is checked on every call.

    Each checkpoint is read once per process: the pair is memoised on the
    checkpoint's resolved path, ``st_mtime_ns`` and size (a rewritten checkpoint
    is read again). The Encoder is therefore **shared**: callers must not train
    it, change its weights or normalisation, or move it to another device in
    place (``copy.deepcopy`` it first).
    """
    key = _checkpoint_key(run, which=which)
    refused = key is not None and key[3] and not allow_unfinished
    if key is None or refused or key not in _LOADED:
        # load_encoder reads the file, or raises the error that names it (missing, damaged, unfinished)
        loaded = load_encoder(run, which=which, allow_unfinished=allow_unfinished)
        if key is not None:
            _LOADED[key] = loaded
        return loaded
    encoder, info = _LOADED[key]
    # the info as this caller named the checkpoint (a run folder, a relative path...)
    info = dataclasses.replace(info, path=resolve(run, which=which), run_dir=training_run(run))
    if info.unfinished:
        log.warning("%s", unfinished_warning(info))  # as load_encoder warns on every load
    return encoder, info


def model_names(infos: Sequence[tuple[Path, CheckpointInfo]]) -> list[str]:
    """Names for runs: the trained concept ("artist", "joint"...), made unique with the folder name."""
    concepts = [str(getattr(info, "concept", "") or Path(run).name) for run, info in infos]
    return [
        c if concepts.count(c) == 1 else f"{c} ({Path(run).name})"
        for c, (run, _info) in zip(concepts, infos)
    ]


def named_runs(runs: Sequence[str | Path], *, allow_unfinished: bool = False) -> dict[str, Path]:
    """``{name: run}`` named as :func:`model_names` names them (each checkpoint read for its concept,
    which also refuses an unfinished run unless ``allow_unfinished``)."""
    infos = [(Path(r), load_run_model(r, allow_unfinished=allow_unfinished)[1]) for r in runs]
    return dict(zip(model_names(infos), (Path(r) for r in runs)))


def run_store_path(run: str | Path) -> Path | None:
    """The store a run was trained on, as its ``run.json`` records it (None if unknown)."""
    meta = Path(run) / "run.json"
    if not meta.is_file():
        return None
    try:
        value = json.loads(meta.read_text(encoding="utf-8")).get("store")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(value) if isinstance(value, str) and value else None


class LoadedRun(NamedTuple):
    """A run as a command holds it: its folder, its Encoder (shared: see :func:`load_run_model`) and its info."""

    run_dir: Path
    encoder: Encoder
    info: CheckpointInfo


def run_folder(run: str | Path) -> Path:
    """The run folder of a run folder or of a checkpoint file inside one."""
    return Path(run) if Path(run).is_dir() else Path(run).parent


def load_runs(runs: Sequence[str | Path], *, which: str = "best", allow_unfinished: bool = False) -> list[LoadedRun]:
    """Each run's :class:`LoadedRun`, in order (see :func:`load_run_model` for the checks)."""
    return [LoadedRun(run_folder(run), *load_run_model(run, which=which, allow_unfinished=allow_unfinished))
            for run in runs]


def unfinished_warnings(loaded: Sequence[LoadedRun]) -> list[str]:
    """The warning line of each run whose training did not finish (loaded with ``allow_unfinished``)."""
    return [unfinished_warning(run.info) for run in loaded if run.info.unfinished]
