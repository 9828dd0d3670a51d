"""Where a run stands and how it goes on: :class:`TrainState`, what ``last.pt`` holds, and resuming.

Resuming is exact: ``last.pt`` holds the weights, the optimizer state, the
:class:`TrainState`, the settings and the torch RNG state, and a resume is refused
unless it computes as the interrupted run did (the same settings but those in
:data:`~musicrep.training.settings.RESUMABLE`, features, process and thread count).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import torch

from ..config import FeatureConfig, to_dict
from ..data.store import FeatureStore
from ..errors import ConfigError
from .checkpoint import read_checkpoint
from .distributed import Dist
from .model import Encoder
from .settings import TrainConfig, check_resumable

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainState:
    """Where a run stands: what ``last.pt`` saves besides the weights and the optimizer."""

    epoch: int = 0
    step: int = 0
    best: float = math.inf
    bad_epochs: int = 0

    def finished(self, config: TrainConfig) -> bool:
        """Whether the run is over: every epoch trained, or stopped early."""
        return self.epoch >= config.epochs or self.stopped_early(config)

    def stopped_early(self, config: TrainConfig) -> bool:
        """Whether the monitored value has not improved for ``config.patience`` epochs."""
        return self.bad_epochs >= config.patience

    def update(self, value: float, *, monitor: str) -> bool:
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
                       config: TrainConfig, feature_config: FeatureConfig, world: int = 1) -> dict:
    """Everything ``last.pt`` / ``best.pt`` hold: weights, optimizer, state, settings, RNG."""
    return {"model": model.state_dict(), "model_config": dataclasses.asdict(model.model_config),
            "feature_config": to_dict(feature_config), "optimizer": optimizer.state_dict(),
            "step": state.step, "epoch": state.epoch, "best_metric": state.best, "bad_epochs": state.bad_epochs,
            "monitor": config.monitor, "config": to_dict(config), "concept": config.concept,
            "rng": {"torch": torch.get_rng_state()},
            # the arithmetic's shape: another thread or process count gives other sums
            "threads": torch.get_num_threads(), "world_size": world}


def resume_from(out_dir: Path, *, store: FeatureStore, config: TrainConfig, resume: bool) -> dict | None:
    """The checkpoint to resume from (None: a fresh run), after checking it fits.

    Without ``resume`` a folder that already holds a run is refused; with it, a
    folder without ``last.pt`` starts afresh (with a warning).
    """
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
    check_resumable(ckpt["config"], config=config, path=last_path)
    if ckpt["feature_config"] != to_dict(store.feature_config):
        raise ConfigError(f"{last_path}: the run was trained on features with other settings than "
                          f"{store.path}'s; resume with the store it was started on")
    return ckpt


def match_arithmetic(ckpt: dict, *, config: TrainConfig, d: Dist, out_dir: Path) -> None:
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


def restore(ckpt: dict, *, model: Encoder, optimizer: torch.optim.Optimizer) -> TrainState:
    """Load ``ckpt``'s weights, optimizer state and torch RNG state; the state the run stood at."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    state = TrainState(ckpt["epoch"], ckpt["step"], ckpt["best_metric"], ckpt["bad_epochs"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    return state


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
