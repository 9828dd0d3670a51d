"""Trained runs as the evaluation, report and inference commands open them.

A run folder (``RUN/``) holds ``config.yaml``, ``run.json`` (the store it
trained on), ``split/``, the checkpoints and ``DONE``; :mod:`musicrep.training.checkpoint`
reads the checkpoints (with the ``DONE`` check), this module names runs and
finds their stores, once for every command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..training.checkpoint import CheckpointInfo, load_encoder
from ..training.model import Encoder


def load_run_model(
    run: str | Path, *, which: str = "best", allow_unfinished: bool = False
) -> tuple[Encoder, CheckpointInfo]:
    """``(Encoder in eval mode, CheckpointInfo)`` of a run folder or checkpoint file.

    A run without ``DONE`` (training killed or still going) is refused with a
    :class:`~musicrep.errors.CheckpointError` unless ``allow_unfinished``; then
    ``info.unfinished`` is True (see :func:`musicrep.training.checkpoint.load_encoder`,
    through which every command loads its models).
    """
    return load_encoder(run, which=which, allow_unfinished=allow_unfinished)


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
