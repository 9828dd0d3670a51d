"""The files of a run folder besides its checkpoints: ``config.yaml``, ``run.json``, ``split/``,
``metrics.csv`` and the optional tensorboard log.

Rank 0 writes them; each is written atomically, so a killed run leaves whole files.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import save_config
from ..data.splits import Split, write_splits
from ..data.store import FeatureStore
from ..io import atomic_write_json
from .distributed import Dist, weight_spread
from .model import Encoder
from .settings import TrainConfig

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter  # optional: only for the annotation

log = logging.getLogger(__name__)


def write_run_files(out_dir: Path, *, splits: dict[str, Split] | None, config: TrainConfig, store: FeatureStore,
                    store_path: Path, world: int, mean: float, std: float) -> None:
    """config.yaml, run.json and (for a fresh run, ``splits`` given) the splits; a fresh run also drops an old DONE.

    ``mean`` and ``std`` are the training split's log-mel statistics (the encoder's normalisation).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if splits is not None:
        (out_dir / "DONE").unlink(missing_ok=True)
        write_splits(splits, folder=out_dir / "split")
    save_config(config, path=out_dir / "config.yaml")
    atomic_write_json(out_dir / "run.json", obj={"store": str(Path(store_path).resolve()), "world_size": world,
                                             "feature_hash": store.feature_config.hash(),
                                             "normalization": {"mean": mean, "std": std}})


def metric_columns(concepts: tuple[str, ...]) -> list[str]:
    """The columns of ``metrics.csv``: one row per epoch, totals then per-concept values."""
    cols = ["epoch", "step", "lr", "train_loss", "valid_loss", "valid_acc"]
    for c in concepts:
        cols += [f"train_loss_{c}", f"train_acc_{c}", f"valid_loss_{c}", f"valid_acc_{c}"]
    return cols + ["seconds", "segments_per_s"]


def read_metrics(path: Path, *, upto_epoch: int) -> list[dict]:
    """The rows of ``metrics.csv`` up to ``upto_epoch`` (a resumed run drops those of epochs it redoes)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if int(r["epoch"]) <= upto_epoch]


def tensorboard(out_dir: Path, *, enabled: bool) -> SummaryWriter | None:
    """A tensorboard writer into ``RUN/tb``, or None when disabled or not installed."""
    if not enabled:
        return None
    try:
        # deferred: tensorboard is optional and slow to import; only runs that log to it need it
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(out_dir / "tb"))


def record_weight_spread(model: Encoder, *, out_dir: Path, d: Dist) -> None:
    """Under DDP: how far the ranks' weights ended apart, warned about and kept in ``run.json`` (rank 0)."""
    spread = weight_spread(model)
    if spread > 0:
        log.warning("ranks ended with different weights (max difference %.3g)", spread)
    if d.main:
        info = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
        atomic_write_json(out_dir / "run.json", obj={**info, "ddp_max_weight_diff": spread})
