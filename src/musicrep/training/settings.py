"""Settings of a training run: :class:`TrainConfig`, its checks, and which may change on resume.

A resumed run must compute as the interrupted one did, so every setting but those
in :data:`RESUMABLE` is fixed once a run has started (:func:`unresumable_changes`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..concepts import COLUMN_MARGIN, JOINT, PAPER_CONCEPTS, PAPER_MARGINS, check_concept
from ..config import setting, to_dict
from ..errors import ConfigError
from .augment import parse_augment
from .losses import LOSSES, REDUCTIONS
from .model import INITS

# Settings that may change when resuming: they do not change the numbers.
RESUMABLE: frozenset[str] = frozenset({"epochs", "patience", "num_workers", "prefetch", "tensorboard",
                                      "resident_frames"})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Defaults: the 2019 paper's (width 256, margins, splits) and, where the papers
    are silent, the authors' 2018 Keras code (``ismir2018-artist``): batch 15,
    loss summed over the batch, SGD lr 0.1 Nesterov 0.9 with Keras time-based
    decay 1e-6 per step, L2 1e-5 on the convolution kernels, ``he_uniform``
    init with biases, Keras BatchNorm constants, per-slot BatchNorm statistics
    and distinct negatives. ``docs/fidelity.md`` lists each with the authors'
    value and why one would change it.
    """

    # artist, album, track, joint, or any catalog column that groups songs (musicrep.concepts)
    concept: str = "artist"
    joint: tuple[str, ...] = PAPER_CONCEPTS  # the concepts a joint model trains: the paper's three
    negatives: int = setting(4, min=0)  # sampled negatives per anchor; 0 only with in_batch_negatives
    # beyond the paper: the batch's other positives (of other labels) as negatives too
    in_batch_negatives: bool = False
    loss: str = setting("hinge", choices=LOSSES)  # "infonce": softmax cross-entropy over the candidates (not the paper's)
    temperature: float = setting(0.1, min=0.0, min_exclusive=True)  # InfoNCE only
    width: int = setting(256, min=1)
    batch_size: int = setting(15, min=2)  # anchors per concept per step (per process under DDP); the authors' 15
    loss_reduction: str = setting("sum", choices=REDUCTIONS)  # over the batch: the authors' K.sum; "mean" departs
    optimizer: str = setting("sgd", choices=("sgd", "adam"))
    lr: float = setting(0.1, min=0.0, min_exclusive=True)
    lr_decay: float = setting(1e-6, min=0.0)  # Keras time-based decay: lr / (1 + lr_decay * step)
    momentum: float = setting(0.9, min=0.0, max=1.0)  # SGD only, with Nesterov as in the 2018 code
    nesterov: bool = True
    weight_decay: float = setting(0.0, min=0.0)  # torch weight decay on every parameter (not the authors')
    l2_conv: float = setting(1e-5, min=0.0)  # Keras kernel_regularizer=l2(1e-5): + l2_conv * sum(w^2) per step
    init: str = setting("he_uniform", choices=INITS)
    conv_bias: bool = True  # the authors' Conv1D layers keep their bias
    bn_eps: float = setting(1e-3, min=0.0, min_exclusive=True)  # Keras BatchNormalization epsilon
    bn_momentum: float = setting(0.01, min=0.0, max=1.0, min_exclusive=True)  # torch convention; Keras 0.99
    bn_per_slot: bool = True  # anchor, positive and each negative get their own BatchNorm statistics
    distinct_negatives: bool = True  # an anchor's N negatives are N different songs
    epochs: int = setting(100, min=1)
    steps_per_epoch: int = setting(500, min=1)
    valid_batches: int = setting(20, min=1)  # per concept, the same batches every epoch
    patience: int = setting(10, min=1)  # epochs without improvement before stopping
    monitor: str = setting("valid_loss", choices=("valid_loss", "valid_acc"))
    seed: int = 0
    # train on the songs of n_games values of game_column only (drawn with the seed, nested:
    # the first n of one shuffled order); None: the whole catalog. Beyond the paper: the
    # built-in corpus's "number of games" sweep (column package = one game's soundtrack)
    n_games: int | None = setting(None, min=1)
    game_column: str = "package"
    n_artists: int | None = setting(None, min=2)  # None: every qualifying artist
    songs_per_artist: int = setting(20, min=3)
    artist_valid: int = setting(2, min=1)
    artist_test: int = setting(2, min=1)
    n_albums: int | None = setting(None, min=2)  # None: 2 x n_artists, or every qualifying album
    songs_per_album: int = setting(10, min=3)
    album_valid: int = setting(1, min=1)
    album_test: int = setting(1, min=1)
    margin_artist: float = setting(PAPER_MARGINS["artist"], min=0.0)
    margin_album: float = setting(PAPER_MARGINS["album"], min=0.0)
    margin_track: float = setting(PAPER_MARGINS["track"], min=0.0)
    # concepts on other catalog columns: their split (like the album rule) and margins ("label=0.3")
    n_values: int | None = setting(None, min=2)  # None: every qualifying value of the column
    songs_per_value: int = setting(10, min=3)
    value_valid: int = setting(1, min=1)
    value_test: int = setting(1, min=1)
    column_margins: tuple[str, ...] = ()  # COLUMN=MARGIN entries; a column without one gets COLUMN_MARGIN
    # beyond the paper, off by default (musicrep.training.augment): "none" or a comma-separated
    # list of gain, eq, noise, stretch, pitch; each crop gets each with probability augment_p
    augment: str = "none"
    augment_p: float = setting(0.5, min=0.0, max=1.0)
    augment_gain_db: float = setting(6.0, min=0.0)  # +- this many dB
    augment_eq_db: float = setting(6.0, min=0.0)  # the equaliser curve within +- this many dB
    augment_noise_db: float = setting(30.0, min=0.0)  # noise floor this far (+- 10 dB) below the crop's mean
    augment_stretch: float = setting(0.1, min=0.0, max=0.5)  # time-stretch factor within 1 +- this
    augment_pitch_bins: float = setting(2.0, min=0.0, max=16.0)  # mel-axis shift within +- this many bins
    amp: bool = False  # bf16 autocast for the encoder's forward pass
    compile: bool = False  # torch.compile the training forward (faster steps after a minute of compiling)
    num_workers: int = setting(0, min=0)  # 0: a prefetch thread; K: K DataLoader worker processes
    prefetch: int = setting(2, min=0)  # batches made ahead of the model
    threads: int = setting(0, min=0)  # torch CPU threads; 0 leaves torch's choice (cores / processes under DDP)
    # training frames kept on the device and batches gathered there (musicrep.training.resident):
    # auto = on a GPU when they fit in half its free memory; the same batches either way
    resident_frames: str = setting("auto", choices=("auto", "always", "never"))
    tensorboard: bool = True  # also log to RUN/tb when tensorboard is installed

    def __post_init__(self) -> None:
        for c in ((self.concept,) if self.concept != JOINT else ()) + tuple(self.joint):
            check_concept(c)
        if self.concept == JOINT and len(set(self.joint)) < 2:
            raise ConfigError(f"joint={','.join(self.joint)}: a joint model needs at least two different concepts")
        self._column_margins()  # parses, or says what is wrong
        parse_augment(self.augment)  # likewise
        if self.negatives == 0 and not self.in_batch_negatives:
            raise ConfigError("negatives=0 leaves an anchor nothing to beat; use negatives >= 1 or "
                              "in_batch_negatives=true")

    @property
    def concepts(self) -> tuple[str, ...]:
        return tuple(self.joint) if self.concept == JOINT else (self.concept,)

    def _column_margins(self) -> dict[str, float]:
        out = {}
        for entry in self.column_margins:
            name, sep, value = str(entry).partition("=")
            try:
                margin = float(value)
            except ValueError:
                margin = -1.0
            if not sep or margin < 0:
                raise ConfigError(f"column_margins: {entry!r} is not COLUMN=MARGIN with a margin >= 0 (e.g. label=0.3)")
            if name in PAPER_CONCEPTS:
                raise ConfigError(f"column_margins: set the {name} margin with margin_{name}={value}")
            out[check_concept(name)] = margin
        return out

    @property
    def anchors_per_loss(self) -> int:
        """How many anchors one concept's loss value adds up (divide by it for a per-anchor figure)."""
        return self.batch_size if self.loss_reduction == "sum" else 1

    def margin(self, concept: str) -> float:
        paper = {"artist": self.margin_artist, "album": self.margin_album, "track": self.margin_track}
        return paper[concept] if concept in paper else self._column_margins().get(concept, COLUMN_MARGIN)


def unresumable_changes(saved: dict, *, config: TrainConfig) -> list[str]:
    """Settings of ``config`` that differ from a run's ``saved`` ones and that a
    resume may not change (all but :data:`RESUMABLE`), sorted."""
    now = to_dict(config)
    # a setting newer than the run has its default there: the behaviour the run was trained with
    defaults = to_dict(TrainConfig())
    return sorted(k for k in now if k not in RESUMABLE and saved.get(k, defaults[k]) != now[k])


def check_resumable(saved: dict, *, config: TrainConfig, path: Path) -> None:
    """Refuse to resume the run of ``path`` (saved settings ``saved``) with a changed unresumable setting."""
    now = to_dict(config)
    # threads: compared as the count the run really used, by resume.match_arithmetic
    changed = [k for k in unresumable_changes(saved, config=config) if k != "threads"]
    if changed:
        k = changed[0]
        raise ConfigError(f"{path}: cannot resume with {k}={now[k]!r}; the run was started with "
                          f"{k}={saved.get(k)!r}. Only {sorted(RESUMABLE)} may change on resume")
