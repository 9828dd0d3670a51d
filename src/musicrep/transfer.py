"""Transfer to a genre-labelled collection with a linear probe: the paper's Table 2.

Song embedding (mean of the encoder's embeddings over non-overlapping 129-frame
segments) -> a linear softmax classifier, trained on the training part, stopped on
the validation part, scored on the test part.

The default probe is the authors' (their 2018 Keras code, see shared/DESIGN.md):

- one *scalar* standardisation: a single mean and standard deviation over all
  values of the training features (``standardize="scalar"``);
- a linear softmax layer (Glorot-uniform weights and zero bias, as Keras
  initialises a Dense layer) trained with cross-entropy;
- SGD, learning rate 0.01, Nesterov momentum 0.9, minibatches of 16 songs drawn in
  a new order every epoch;
- early stopping on the validation loss with patience 8; the weights of the epoch
  with the lowest validation loss are kept;
- 10 trials. Each trial has its own initialisation, its own minibatch order and,
  when the collection has no split of its own, its own stratified split (split
  seed ``split_seed + trial seed``). Reported: the mean, the sample standard
  deviation and a Student-t 95 % interval of the mean over trials.

Departures, each a setting of :class:`TransferConfig`:

- ``probe_max_epochs`` (500) caps training, where the authors rely on early
  stopping alone;
- ``standardize="per_dim"``: a z-score per dimension, whose standard deviation is
  floored at :data:`PER_DIM_FLOOR` times the mean per-dimension standard deviation,
  so that a unit nearly constant on the training songs cannot blow up on test songs;
- ``probe="adam_grid"``: the earlier probe of this project (full-batch Adam, the L2
  penalty, learning rate and number of epochs chosen on validation accuracy);
- the genre CNN baseline is trained in the first ``cnn_trials`` (3) trials only: it
  trains a CNN per trial; the authors do not say how many trials they ran for it.

The split is the dataset's own when its catalog has a ``split`` column
(train/valid/test, also training/validation: FMA's column, GTZAN's fault-filtered
lists); it is then fixed and only the initialisation and the minibatch order vary
between trials. Otherwise every trial draws a seeded stratified split. Song
features are computed once and indexed per trial. Baselines on the same trials:

- ``genres``: the same Encoder CNN trained from scratch on the genre labels
  (softmax head, cross-entropy on random crops; a song's prediction is the mean
  of its segments' class probabilities) -- the paper's "genres (baseline)";
- ``random``: the encoder with random weights (one draw per trial), with the same probe;
- ``mfcc``: mean and std over time of MFCCs, computed here as the type-II DCT of
  the stored log-mel (``log10(1 + 10 mel)``, not dB) over the mel axis;
- ``logmel``: mean and std over time of the 128 log-mel bands.

For run folders, :func:`musicrep.provenance.transfer_overlap` checks whether the
transfer songs are among the encoder's own training songs; each overlap becomes a
warning in :attr:`TransferResult.warnings`, printed under the table.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from scipy.fft import dct
from torch import nn
from torch.nn import functional as F

from . import progress
from .errors import ConfigError
from .evaluate import EvaluationError, model_names, normalize_part, open_store

log = logging.getLogger(__name__)

BASELINES: tuple[str, ...] = ("genres", "random", "mfcc", "logmel")
DISPLAY: dict[str, str] = {
    "genres": "genres (baseline)",
    "random": "random encoder",
    "mfcc": "MFCC mean/std",
    "logmel": "log-mel mean/std",
}
PROBES: tuple[str, ...] = ("sgd", "adam_grid")
STANDARDIZATIONS: tuple[str, ...] = ("scalar", "per_dim")
#: ``standardize="per_dim"``: no dimension's std counts as less than this times the mean std
PER_DIM_FLOOR = 0.01


def _f(default: Any, **meta: Any) -> Any:
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Settings of the transfer test: probe, trials, split, baselines.

    The defaults are the authors' probe (see the module docstring): ``probe="sgd"``
    with ``probe_lr`` 0.01, ``probe_momentum`` 0.9 (Nesterov), ``probe_batch_size``
    16, early stopping on the validation loss with ``probe_patience`` 8,
    ``standardize="scalar"`` and 10 trials (``seeds``).

    Departures (authors unspecified or our additions): ``probe_max_epochs`` caps
    training; ``cnn_trials``: the genre CNN baseline runs in the first 3 trials only
    (it trains a CNN per trial); ``standardize="per_dim"`` and ``probe="adam_grid"``
    (which uses ``l2_grid``, ``lr_grid``, ``probe_epochs``, ``probe_eval_every``)
    are alternatives.
    """

    label_column: str = "genre"
    seeds: tuple[int, ...] = tuple(range(10))  # one trial per seed
    cnn_trials: int = _f(3, min=1)
    split_seed: int = 0
    valid_fraction: float = _f(0.15, min=0.0, max=0.5, min_exclusive=True)
    test_fraction: float = _f(0.15, min=0.0, max=0.5, min_exclusive=True)
    probe: str = _f("sgd", choices=PROBES)
    standardize: str = _f("scalar", choices=STANDARDIZATIONS)
    probe_lr: float = _f(0.01, min=0.0, min_exclusive=True)
    probe_momentum: float = _f(0.9, min=0.0, max=0.999)
    probe_batch_size: int = _f(16, min=1)
    probe_patience: int = _f(8, min=1)
    probe_max_epochs: int = _f(500, min=1)
    l2_grid: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    lr_grid: tuple[float, ...] = (1e-3, 1e-2)
    probe_epochs: int = _f(300, min=1)
    probe_eval_every: int = _f(10, min=1)
    n_mfcc: int = _f(20, min=1)
    cnn_steps: int = _f(1500, min=1)
    cnn_batch_size: int = _f(32, min=1)
    cnn_lr: float = _f(1e-3, min=0.0, min_exclusive=True)
    cnn_eval_every: int = _f(100, min=1)
    baseline_width: int = _f(0, min=0)  # 0: the models' width (or 256)

    def __post_init__(self) -> None:
        # load_config checks every range; this catches a bad choice made in code
        if self.probe not in PROBES:
            raise ConfigError(f"probe={self.probe!r} is not one of {list(PROBES)}")
        if self.standardize not in STANDARDIZATIONS:
            raise ConfigError(f"standardize={self.standardize!r} is not one of {list(STANDARDIZATIONS)}")


# --------------------------------------------------------------------------- split


def dataset_split(
    catalog: Sequence[Any], *, config: TransferConfig = TransferConfig()
) -> tuple[dict[str, str], dict[str, str], str]:
    """Labels and train/valid/test parts of a genre-labelled catalog.

    Returns
    -------
    labels : ``{track_id: label}`` for tracks with a non-empty label
    parts : ``{track_id: "train"|"valid"|"test"}`` (tracks outside the dataset's
        own split are left out)
    source : "dataset", "dataset (valid carved from train)" or "stratified (seed k)"
        (seed ``config.split_seed``)
    """
    labels = {t.track_id: t.get(config.label_column).strip() for t in catalog if t.get(config.label_column).strip()}
    if len(set(labels.values())) < 2:
        raise EvaluationError(
            f"column {config.label_column!r} has {len(set(labels.values()))} distinct label(s) on "
            f"{len(labels)} tracks; transfer needs at least two classes"
        )
    own = {t.track_id: t.get("split").strip() for t in catalog if t.track_id in labels and t.get("split").strip()}
    rng = np.random.default_rng(config.split_seed)
    if own:
        parts = {tid: normalize_part(p, where=f"split of track {tid}") for tid, p in own.items()}
        source = "dataset"
        dropped = len(labels) - len(parts)
        if dropped:
            log.info("%d labelled tracks are outside the dataset's own split and are left out", dropped)
        if "valid" not in parts.values():
            train = [t for t, p in parts.items() if p == "train"]
            parts.update(_stratified(train, labels, rng, fractions={"valid": config.valid_fraction}))
            source = "dataset (valid carved from train)"
    else:
        parts = _stratified(
            list(labels), labels, rng, fractions={"valid": config.valid_fraction, "test": config.test_fraction}
        )
        source = f"stratified (seed {config.split_seed})"
    for need in ("train", "valid", "test"):
        if need not in parts.values():
            raise EvaluationError(f"the transfer split has no {need} songs; use a larger collection")
    return {t: labels[t] for t in parts}, parts, source


def _stratified(ids: Sequence[str], labels: Mapping[str, str], rng: np.random.Generator, *, fractions: Mapping[str, float]) -> dict[str, str]:
    parts: dict[str, str] = {}
    by_label: dict[str, list[str]] = {}
    for t in sorted(ids):
        by_label.setdefault(labels[t], []).append(t)
    for lab in sorted(by_label):
        members = [by_label[lab][i] for i in rng.permutation(len(by_label[lab]))]
        pos = 0
        for part, frac in fractions.items():
            n = int(round(frac * len(members)))
            if n == 0 and len(members) >= len(fractions) + 1:
                n = 1
            for t in members[pos : pos + n]:
                parts[t] = part
            pos += n
        for t in members[pos:]:
            parts[t] = "train"
    return parts


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial of the transfer test.

    Attributes
    ----------
    seed : seeds the probe's initialisation and minibatch order (and a baseline's weights)
    split_seed : seed of this trial's stratified split; None for the dataset's fixed split
    index : ``{"train"|"valid"|"test": int [n_part]}`` rows of :attr:`TrialPlan.track_ids`
    y : ``{"train"|"valid"|"test": int [n_part]}`` class indices
    """

    seed: int
    split_seed: int | None
    index: dict[str, np.ndarray]
    y: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class TrialPlan:
    """The labelled songs (features are computed once for ``track_ids``) and the trials."""

    track_ids: list[str]
    classes: list[str]
    counts: dict[str, int]
    source: str
    trials: list[Trial]


def trial_plan(catalog: Sequence[Any], *, track_ids: Sequence[str], config: TransferConfig = TransferConfig()) -> TrialPlan:
    """One :class:`Trial` per seed of ``config.seeds``.

    A collection with its own split keeps it in every trial (only the probe's
    initialisation and minibatch order vary); otherwise trial ``s`` draws a
    stratified split with seed ``config.split_seed + s``.

    Parameters
    ----------
    catalog : the collection's tracks (with ``config.label_column`` and maybe ``split``)
    track_ids : the store's tracks, in store order
    """
    if not config.seeds:
        raise ConfigError("transfer needs at least one trial seed (seeds=...)")
    labels, parts, source = dataset_split(catalog, config=config)
    per_trial: list[tuple[int, int | None, dict[str, str]]] = []
    if source.startswith("stratified"):
        for seed in config.seeds:
            split_seed = config.split_seed + seed
            trial_config = dataclasses.replace(config, split_seed=split_seed)
            per_trial.append((seed, split_seed, dataset_split(catalog, config=trial_config)[1]))
        source = f"stratified, drawn anew each trial with split seed {config.split_seed} + trial seed"
    else:
        per_trial = [(seed, None, parts) for seed in config.seeds]
        source += ", fixed in every trial: only the probe's initialisation and minibatch order vary"
    ids = [t for t in track_ids if t in labels]
    classes = sorted({labels[t] for t in ids})
    cls_index = {c: i for i, c in enumerate(classes)}
    trials = []
    for seed, split_seed, p in per_trial:
        index = {part: np.array([i for i, t in enumerate(ids) if p.get(t) == part], dtype=np.int64)
                 for part in ("train", "valid", "test")}
        y = {part: np.array([cls_index[labels[ids[i]]] for i in rows], dtype=np.int64) for part, rows in index.items()}
        trials.append(Trial(seed=seed, split_seed=split_seed, index=index, y=y))
    counts = {part: len(rows) for part, rows in trials[0].index.items()}
    return TrialPlan(track_ids=ids, classes=classes, counts=counts, source=source, trials=trials)


# --------------------------------------------------------------------------- features


def song_embeddings(model: Any, *, store: Any, track_ids: Sequence[str], cache: bool = True) -> np.ndarray:
    """Song embeddings float32 [n, D], in the order of ``track_ids``.

    Computed by :func:`musicrep.embed.embed_store` (mean of the non-overlapping
    segments' embeddings); a run folder's vectors are cached under the run, an
    in-memory Encoder's are not.
    """
    from .embed import EmbeddingModel, embed_store

    if not isinstance(model, (str, Path, EmbeddingModel)):
        model = EmbeddingModel(model, feature_config=store.feature_config)  # in memory: never cached
    ids, vectors = embed_store(model, store, track_ids=list(track_ids), cache=cache)
    pos = {t: i for i, t in enumerate(ids)}
    return np.asarray(vectors, dtype=np.float32)[[pos[t] for t in track_ids]]


def summary_features(frames: np.ndarray, *, kind: str, n_mfcc: int = 20) -> np.ndarray:
    """Mean and std over time of MFCCs or log-mel bands.

    Parameters
    ----------
    frames : float [T, n_mels] log-mel as stored
    kind : "mfcc" (type-II orthonormal DCT over the mel axis, first ``n_mfcc``
        coefficients) or "logmel"

    Returns
    -------
    np.ndarray [shape=(2 * n_features,)]
    """
    x = np.asarray(frames, dtype=np.float64)
    if kind == "mfcc":
        x = dct(x, type=2, norm="ortho", axis=1)[:, :n_mfcc]
    elif kind != "logmel":
        raise ConfigError(f"summary feature kind {kind!r} is not 'mfcc' or 'logmel'")
    return np.concatenate([x.mean(axis=0), x.std(axis=0)]).astype(np.float32)


def _frame_moments(store: Any, track_ids: Sequence[str]) -> np.ndarray:
    """Per track: number of values, their sum and sum of squares, float64 [n, 3]."""
    out = np.zeros((len(track_ids), 3), dtype=np.float64)
    for i, t in enumerate(track_ids):
        x = store.frames(t).astype(np.float64)
        out[i] = (x.size, x.sum(), np.square(x).sum())
    return out


def _scalar_stats(moments: np.ndarray) -> tuple[float, float]:
    """Scalar mean and std of the frames summarised by rows of :func:`_frame_moments`."""
    n, s, s2 = moments.sum(axis=0)
    mean = s / max(n, 1.0)
    std = float(np.sqrt(max(s2 / max(n, 1.0) - mean * mean, 0.0)))
    return float(mean), max(std, 1e-6)


# --------------------------------------------------------------------------- probe


def trial_summary(values: Sequence[float]) -> tuple[float, float, float | None, float | None]:
    """Mean, sample standard deviation and Student-t 95 % interval of the mean.

    Parameters
    ----------
    values : one accuracy per trial, [n]

    Returns
    -------
    (mean, std, low, high); ``std`` has ddof 1 (0.0 for a single trial, whose
    interval is ``(None, None)``); the interval is clipped to [0, 1], the range
    of an accuracy
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise EvaluationError("no trials to summarise")
    mean = float(x.mean())
    if x.size == 1:
        return mean, 0.0, None, None
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, df=x.size - 1)) * std / np.sqrt(x.size)
    return mean, std, max(mean - half, 0.0), min(mean + half, 1.0)


@dataclasses.dataclass
class ProbeResult:
    """Test accuracy of one method over trials, with the summed confusion matrix.

    ``accuracy_std`` is the sample standard deviation over trials (ddof 1);
    ``ci95_low``/``ci95_high`` the Student-t 95 % interval of the mean (None for one
    trial). ``confusion[i][j]``: test songs of class ``classes[i]`` predicted as
    ``classes[j]``, summed over trials. ``chosen``: per trial, its seed and what was
    picked on validation (stopping epoch, or the grid point of ``adam_grid``).
    """

    method: str
    accuracy_mean: float
    accuracy_std: float
    accuracies: list[float]
    classes: list[str]
    confusion: list[list[int]]
    chosen: list[dict] = dataclasses.field(default_factory=list)
    ci95_low: float | None = None
    ci95_high: float | None = None
    n_trials: int = 0

    def __post_init__(self) -> None:
        # results written before the interval existed get it from their accuracies
        self.n_trials = self.n_trials or len(self.accuracies)
        if self.ci95_low is None and len(self.accuracies) > 1:
            _m, _s, self.ci95_low, self.ci95_high = trial_summary(self.accuracies)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "ProbeResult":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def _summarise(
    method: str, accs: Sequence[float], classes: Sequence[str], confusion: np.ndarray, chosen: list[dict]
) -> ProbeResult:
    mean, std, low, high = trial_summary(accs)
    return ProbeResult(
        method=method, accuracy_mean=mean, accuracy_std=std, accuracies=[float(a) for a in accs],
        classes=list(classes), confusion=np.asarray(confusion).tolist(), chosen=chosen,
        ci95_low=low, ci95_high=high, n_trials=len(accs),
    )


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run small dense ops on one thread: a linear probe is far too small to gain
    from more, and on a busy machine extra threads only wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def standardize_features(x_train: np.ndarray, *others: np.ndarray, kind: str = "scalar") -> list[np.ndarray]:
    """Standardise features with statistics of the training part.

    Parameters
    ----------
    x_train : float [n, D] training features; ``others``: more [m, D] arrays
    kind : "scalar" (one mean and one std over all values, the authors') or
        "per_dim" (per dimension; a std below :data:`PER_DIM_FLOOR` times the mean
        per-dimension std counts as that floor, so a unit nearly constant on the
        training songs stays near zero on the others)

    Returns
    -------
    list of float64 arrays: ``x_train`` then each of ``others``, standardised
    """
    x = np.asarray(x_train, dtype=np.float64)
    if kind == "scalar":
        mean, std = x.mean(), x.std()
        std = std if std > 0 else 1.0
    elif kind == "per_dim":
        mean, std = x.mean(axis=0), x.std(axis=0)
        scale = float(std.mean())
        std = np.maximum(std, PER_DIM_FLOOR * scale) if scale > 0 else np.ones_like(std)
    else:
        raise ConfigError(f"standardize={kind!r} is not one of {list(STANDARDIZATIONS)}")
    return [(np.asarray(a, dtype=np.float64) - mean) / std for a in (x_train, *others)]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _xent(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the softmax layer ``(w, b)`` on ``(x, y)``."""
    logp = _log_softmax(x @ w + b)
    return float(-logp[np.arange(len(y)), y].mean()), float((logp.argmax(axis=1) == y).mean())


def fit_sgd_probe(
    *, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
    n_classes: int, config: TransferConfig = TransferConfig(), seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The authors' probe: a softmax layer trained by minibatch SGD with Nesterov
    momentum, stopped early on the validation loss.

    Parameters
    ----------
    x_train, x_valid : float [n_*, D] standardised features
    y_train, y_valid : int [n_*] class indices
    config : ``probe_lr``, ``probe_momentum``, ``probe_batch_size``, ``probe_patience``,
        ``probe_max_epochs``
    seed : draws the Glorot-uniform initial weights and each epoch's minibatch order

    Returns
    -------
    w : float64 [D, n_classes] and b : float64 [n_classes], of the epoch with the
        lowest validation loss
    info : ``epochs`` (that epoch), ``stopped_epoch``,
        ``valid_loss``, ``valid_accuracy`` (of the kept weights), ``history``
        (validation loss after each epoch)
    """
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x_train, dtype=np.float64), np.asarray(y_train, dtype=np.int64)
    xv, yv = np.asarray(x_valid, dtype=np.float64), np.asarray(y_valid, dtype=np.int64)
    limit = np.sqrt(6.0 / (x.shape[1] + n_classes))
    w, b = rng.uniform(-limit, limit, size=(x.shape[1], n_classes)), np.zeros(n_classes)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    onehot = np.eye(n_classes)[y]
    lr, mu, bs = config.probe_lr, config.probe_momentum, config.probe_batch_size
    best = (float("inf"), 0, w.copy(), b.copy())  # as Keras: the first epoch always counts as an improvement
    history: list[float] = []
    epoch = wait = 0
    while epoch < config.probe_max_epochs and wait < config.probe_patience:
        epoch += 1
        order = rng.permutation(len(x))
        for start in range(0, len(x), bs):
            rows = order[start : start + bs]
            g = (np.exp(_log_softmax(x[rows] @ w + b)) - onehot[rows]) / len(rows)
            gw, gb = x[rows].T @ g, g.sum(axis=0)
            vw, vb = mu * vw + gw, mu * vb + gb  # Nesterov, as torch.optim.SGD(nesterov=True)
            w, b = w - lr * (gw + mu * vw), b - lr * (gb + mu * vb)
        history.append(_xent(xv, yv, w, b)[0])
        if history[-1] < best[0]:
            best, wait = (history[-1], epoch, w.copy(), b.copy()), 0
        else:
            wait += 1
    vloss, vacc = _xent(xv, yv, best[2], best[3])
    info = {"epochs": best[1], "stopped_epoch": epoch, "valid_loss": vloss, "valid_accuracy": vacc, "history": history}
    return best[2], best[3], info


def _fit_softmax(
    x_tr: torch.Tensor, y_tr: torch.Tensor, x_va: torch.Tensor, y_va: torch.Tensor, *,
    n_classes: int, lr: float, l2: float, epochs: int, eval_every: int, seed: int,
) -> tuple[nn.Linear, float, float, int]:
    torch.manual_seed(seed)
    layer = nn.Linear(x_tr.shape[1], n_classes)
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    best = (-1.0, float("inf"), 0, copy.deepcopy(layer.state_dict()))
    for epoch in range(1, epochs + 1):
        opt.zero_grad()
        loss = F.cross_entropy(layer(x_tr), y_tr) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        opt.step()
        if epoch % eval_every == 0 or epoch == epochs:
            with torch.no_grad():
                logits = layer(x_va)
                acc = float((logits.argmax(1) == y_va).float().mean())
                vloss = float(F.cross_entropy(logits, y_va))
            if acc > best[0] or (acc == best[0] and vloss < best[1]):
                best = (acc, vloss, epoch, copy.deepcopy(layer.state_dict()))
    layer.load_state_dict(best[3])
    return layer, best[0], best[1], best[2]


def _adam_grid(
    x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray, *,
    n_classes: int, config: TransferConfig, seed: int,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``probe="adam_grid"``: full-batch Adam per (l2, lr), the best on validation accuracy."""
    t = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in (("tr", x_tr), ("va", x_va))}
    ytr, yva = torch.from_numpy(np.asarray(y_tr, dtype=np.int64)), torch.from_numpy(np.asarray(y_va, dtype=np.int64))
    best = None
    for l2, lr in ((l2, lr) for l2 in config.l2_grid for lr in config.lr_grid):
        layer, vacc, vloss, epoch = _fit_softmax(
            t["tr"], ytr, t["va"], yva, n_classes=n_classes, lr=lr, l2=l2,
            epochs=config.probe_epochs, eval_every=config.probe_eval_every, seed=seed,
        )
        if best is None or vacc > best[0] or (vacc == best[0] and vloss < best[1]):
            best = (vacc, vloss, layer, {"l2": l2, "lr": lr, "epochs": epoch, "valid_accuracy": vacc, "valid_loss": vloss})
    if best is None:
        raise ConfigError("probe='adam_grid' needs a non-empty l2_grid and lr_grid")
    layer = best[2]
    w = layer.weight.detach().numpy().astype(np.float64).T
    return w, layer.bias.detach().numpy().astype(np.float64), best[3]


def _fit_and_predict(
    x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray], *, n_classes: int, config: TransferConfig, seed: int
) -> tuple[np.ndarray, dict]:
    """Standardise, fit the probe on train (stopped / chosen on valid), predict test.

    Returns
    -------
    pred : int [n_test] predicted classes; info : what was chosen on validation
    """
    xtr, xva, xte = standardize_features(x["train"], x["valid"], x["test"], kind=config.standardize)
    kw = dict(n_classes=n_classes, config=config, seed=seed)
    with _one_thread():
        if config.probe == "sgd":
            w, b, info = fit_sgd_probe(x_train=xtr, y_train=y["train"], x_valid=xva, y_valid=y["valid"], **kw)
            info = {k: v for k, v in info.items() if k != "history"}
        elif config.probe == "adam_grid":
            w, b, info = _adam_grid(xtr, y["train"], xva, y["valid"], **kw)
        else:
            raise ConfigError(f"probe={config.probe!r} is not one of {list(PROBES)}")
    return (xte @ w + b).argmax(axis=1), {**info, "seed": seed}


def linear_probe(
    *,
    x_train: np.ndarray, y_train: np.ndarray,
    x_valid: np.ndarray, y_valid: np.ndarray,
    x_test: np.ndarray, y_test: np.ndarray,
    classes: Sequence[str],
    config: TransferConfig = TransferConfig(),
    method: str = "probe",
) -> ProbeResult:
    """Linear softmax classifier on one fixed split, one trial per seed.

    Only the initialisation and the minibatch order differ between trials here;
    :func:`transfer` also redraws the split per trial where the dataset has none.

    Parameters
    ----------
    x_train, x_valid, x_test : float [n_*, D] features (standardised here on train,
        as ``config.standardize`` says)
    y_train, y_valid, y_test : int [n_*] class indices into ``classes``
    classes : class names
    config : ``probe`` and its settings, ``standardize``, ``seeds``

    Returns
    -------
    ProbeResult with one accuracy per seed
    """
    x = {"train": x_train, "valid": x_valid, "test": x_test}
    y = {"train": np.asarray(y_train, dtype=np.int64), "valid": np.asarray(y_valid, dtype=np.int64)}
    y_test = np.asarray(y_test, dtype=np.int64)
    n_classes = len(classes)
    accs, chosen = [], []
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    for seed in config.seeds:
        pred, info = _fit_and_predict(x, y, n_classes=n_classes, config=config, seed=seed)
        accs.append(float((pred == y_test).mean()))
        confusion += _confusion(y_test, pred, n_classes)
        chosen.append(info)
    return _summarise(method, accs, classes, confusion, chosen)


def _probe_trial(
    features: np.ndarray, trial: Trial, *, n_classes: int, config: TransferConfig
) -> tuple[float, np.ndarray, dict]:
    """Accuracy, confusion matrix [k, k] and choices of one trial on features [n, D]."""
    x = {part: features[rows] for part, rows in trial.index.items()}
    pred, info = _fit_and_predict(x, trial.y, n_classes=n_classes, config=config, seed=trial.seed)
    info["split_seed"] = trial.split_seed
    return float((pred == trial.y["test"]).mean()), _confusion(trial.y["test"], pred, n_classes), info


def probe_trials(
    method: str, *, features: np.ndarray, plan: TrialPlan, config: TransferConfig = TransferConfig()
) -> ProbeResult:
    """The probe in every trial of ``plan`` on features float [len(plan.track_ids), D]."""
    k = len(plan.classes)
    results = [_probe_trial(features, trial, n_classes=k, config=config) for trial in plan.trials]
    res = _summarise(method, [r[0] for r in results], plan.classes, sum(r[1] for r in results), [r[2] for r in results])
    log.info("transfer %s: %.3f +- %.3f over %d trials", method, res.accuracy_mean, res.accuracy_std, res.n_trials)
    return res


# --------------------------------------------------------------------------- genre CNN baseline


class _GenreCNN(nn.Module):
    def __init__(self, width: int, n_mels: int, n_classes: int):
        super().__init__()
        from .model import Encoder

        self.encoder = Encoder(width=width, n_mels=n_mels)
        self.head = nn.Linear(self.encoder.embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@torch.no_grad()
def _song_probabilities(net: _GenreCNN, store: Any, track_ids: Sequence[str]) -> np.ndarray:
    from .model import split_segments

    net.eval()
    seg = store.feature_config.segment_frames
    out = []
    for t in track_ids:
        segments = torch.from_numpy(np.ascontiguousarray(split_segments(store.frames(t), seg), dtype=np.float32))
        out.append(F.softmax(net(segments), dim=1).mean(0).numpy())
    net.train()
    return np.stack(out)


def _genre_cnn_trial(
    *, store: Any, ids: Mapping[str, Sequence[str]], y: Mapping[str, np.ndarray], n_classes: int,
    width: int, config: TransferConfig, seed: int, stats: tuple[float, float],
) -> tuple[np.ndarray, dict]:
    """Train one genre CNN (seeded by ``seed``); predictions int [n_test] and what was kept."""
    seg = store.feature_config.segment_frames
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _GenreCNN(width, store.feature_config.n_mels, n_classes)
    net.encoder.set_normalization(float(stats[0]), float(max(stats[1], 1e-6)))
    opt = torch.optim.Adam(net.parameters(), lr=config.cnn_lr)
    best = (-1.0, 0, copy.deepcopy(net.state_dict()))
    train_ids, y_train = list(ids["train"]), np.asarray(y["train"], dtype=np.int64)
    net.train()
    for step in progress.bar(range(1, config.cnn_steps + 1), desc=f"genre CNN seed {seed}", leave=False):
        pick = rng.integers(0, len(train_ids), size=config.cnn_batch_size)
        batch = np.stack([store.crop(train_ids[i], rng=rng, length=seg) for i in pick]).astype(np.float32)
        opt.zero_grad()
        loss = F.cross_entropy(net(torch.from_numpy(batch)), torch.from_numpy(y_train[pick]))
        loss.backward()
        opt.step()
        if step % config.cnn_eval_every == 0 or step == config.cnn_steps:
            vacc = float((_song_probabilities(net, store, ids["valid"]).argmax(1) == y["valid"]).mean())
            if vacc > best[0]:
                best = (vacc, step, copy.deepcopy(net.state_dict()))
    net.load_state_dict(best[2])
    pred = _song_probabilities(net, store, ids["test"]).argmax(1)
    return pred, {"seed": seed, "step": best[1], "valid_accuracy": best[0], "width": width}


# --------------------------------------------------------------------------- top level


def _acc_cell(res: ProbeResult) -> str:
    if res.ci95_low is None or res.ci95_high is None:
        return f"{res.accuracy_mean:.3f} +- {res.accuracy_std:.3f} [one trial]"
    return f"{res.accuracy_mean:.3f} +- {res.accuracy_std:.3f} [{res.ci95_low:.3f}, {res.ci95_high:.3f}]"


@dataclasses.dataclass
class TransferResult:
    """Table 2 for one dataset: ``methods[name]`` is a :class:`ProbeResult`.

    Model names come first (e.g. "artist", "joint"), then the baselines
    ("genres", "random", "mfcc", "logmel"; see :data:`DISPLAY`). ``label_column``
    is the catalog column classified; ``warnings`` are the overlaps between the
    transfer songs and the encoders' training songs
    (:func:`musicrep.provenance.transfer_overlap`).
    """

    dataset: str
    classes: list[str]
    counts: dict[str, int]
    split_source: str
    methods: dict[str, ProbeResult]
    runs: dict[str, str] = dataclasses.field(default_factory=dict)
    label_column: str = "genre"
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "classes": self.classes, "counts": self.counts,
            "split_source": self.split_source, "runs": self.runs, "label_column": self.label_column,
            "warnings": list(self.warnings), "methods": {k: v.to_dict() for k, v in self.methods.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "TransferResult":
        return cls(
            dataset=data["dataset"], classes=list(data["classes"]), counts=dict(data["counts"]),
            split_source=data["split_source"], runs=dict(data.get("runs", {})),
            methods={k: ProbeResult.from_dict(v) for k, v in data["methods"].items()},
            label_column=str(data.get("label_column", "genre")), warnings=list(data.get("warnings", [])),
        )

    def table(self) -> str:
        """Plain-text table: one row per method, accuracy mean +- std [95 % interval],
        trials; then a line per warning."""
        w = max([len("chance (majority class)"), *(len(DISPLAY.get(m, m)) for m in self.methods)]) + 2
        lines = [f"{self.dataset}: {self.label_column}, {len(self.classes)} classes, "
                 + ", ".join(f"{k} {v}" for k, v in self.counts.items()) + f"; split: {self.split_source}",
                 "method".ljust(w) + "accuracy: mean +- std [95% CI]".rjust(36) + "trials".rjust(8)]
        for name, res in self.methods.items():
            lines.append(DISPLAY.get(name, name).ljust(w) + _acc_cell(res).rjust(36) + str(res.n_trials).rjust(8))
        lines.append("chance (majority class)".ljust(w) + f"{self.majority:.3f}".rjust(36))
        lines += [f"WARNING: {line}" for line in self.warnings]
        return "\n".join(lines)

    @property
    def majority(self) -> float:
        """Test accuracy of always predicting the most frequent test class."""
        any_res = next(iter(self.methods.values()), None)
        if any_res is None:
            return float("nan")
        rows = np.asarray(any_res.confusion).sum(axis=1)
        return float(rows.max() / max(rows.sum(), 1))


def transfer(
    models: Mapping[str, Any],
    *,
    store: Any,
    config: TransferConfig = TransferConfig(),
    baselines: Iterable[str] = BASELINES,
    dataset: str | None = None,
) -> TransferResult:
    """Linear-probe transfer of several models, plus baselines, over the same trials.

    Parameters
    ----------
    models : ``{name: run folder or Encoder}``; runs are embedded through
        :func:`musicrep.embed.embed_store` (cached), once for all labelled songs
    store : FeatureStore (or path) of a genre-labelled collection
    config : see :class:`TransferConfig`
    baselines : any of "genres", "random", "mfcc", "logmel"
    dataset : name shown in tables (default: the store folder's name)

    Returns
    -------
    TransferResult; for run folders, with a warning per run whose training songs
    include transfer songs
    """
    baselines = list(baselines)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline {unknown[0]!r}; choose from {list(BASELINES)}")
    store = open_store(store)
    dataset = dataset or Path(getattr(store, "path", "dataset")).name
    plan = trial_plan(store.catalog, track_ids=store.track_ids, config=config)
    log.info("transfer on %s: %d classes, %s, %d trials (%s split)", dataset, len(plan.classes), plan.counts,
             len(plan.trials), plan.source)
    runs = {k: str(v) for k, v in models.items() if isinstance(v, (str, Path))}
    warnings = _overlap_warnings(list(runs.values()), store=store, track_ids=plan.track_ids)

    methods: dict[str, ProbeResult] = {}
    width = config.baseline_width
    for name, model in models.items():
        vec = song_embeddings(model, store=store, track_ids=plan.track_ids)
        methods[name] = probe_trials(name, features=vec, plan=plan, config=config)
        width = width or vec.shape[1] // 2
    width = width or 256
    moments = _frame_moments(store, plan.track_ids) if {"random", "genres"} & set(baselines) else None
    for base in baselines:
        if base in ("mfcc", "logmel"):
            feats = np.stack([summary_features(store.frames(t), kind=base, n_mfcc=config.n_mfcc) for t in plan.track_ids])
            methods[base] = probe_trials(base, features=feats, plan=plan, config=config)
        elif base == "random":
            methods[base] = _random_encoder(store=store, plan=plan, config=config, width=width, moments=moments)
        elif base == "genres":
            methods[base] = _genre_cnn(store=store, plan=plan, config=config, width=width, moments=moments)
    return TransferResult(
        dataset=dataset, classes=plan.classes, counts=plan.counts, split_source=plan.source, methods=methods,
        runs=runs, label_column=config.label_column, warnings=warnings,
    )


def _overlap_warnings(runs: Sequence[str], *, store: Any, track_ids: Sequence[str]) -> list[str]:
    if not runs:
        return []
    from .provenance import transfer_overlap

    warnings = transfer_overlap(runs, store=store, track_ids=track_ids)
    for line in warnings:
        log.warning("%s", line)
    return warnings


def _random_encoder(*, store: Any, plan: TrialPlan, config: TransferConfig, width: int, moments: np.ndarray) -> ProbeResult:
    """One randomly initialised encoder per trial (seeded by the trial), the same probe."""
    from .model import Encoder

    k = len(plan.classes)
    results = []
    for trial in plan.trials:
        torch.manual_seed(trial.seed)
        enc = Encoder(width=width, n_mels=store.feature_config.n_mels).eval()
        enc.set_normalization(*_scalar_stats(moments[trial.index["train"]]))
        vec = song_embeddings(enc, store=store, track_ids=plan.track_ids)
        results.append(_probe_trial(vec, trial, n_classes=k, config=config))
    res = _summarise("random", [r[0] for r in results], plan.classes, sum(r[1] for r in results), [r[2] for r in results])
    log.info("transfer random: %.3f +- %.3f over %d trials", res.accuracy_mean, res.accuracy_std, res.n_trials)
    return res


def _genre_cnn(*, store: Any, plan: TrialPlan, config: TransferConfig, width: int, moments: np.ndarray) -> ProbeResult:
    """The genre CNN in the first ``config.cnn_trials`` trials (it trains a network per trial)."""
    k = len(plan.classes)
    accs, chosen = [], []
    confusion = np.zeros((k, k), dtype=np.int64)
    for trial in plan.trials[: config.cnn_trials]:
        ids = {part: [plan.track_ids[i] for i in rows] for part, rows in trial.index.items()}
        pred, info = _genre_cnn_trial(store=store, ids=ids, y=trial.y, n_classes=k, width=width, config=config,
                                      seed=trial.seed, stats=_scalar_stats(moments[trial.index["train"]]))
        accs.append(float((pred == trial.y["test"]).mean()))
        confusion += _confusion(trial.y["test"], pred, k)
        chosen.append({**info, "split_seed": trial.split_seed})
        log.info("genre CNN trial %d: test accuracy %.3f (step %d)", trial.seed, accs[-1], info["step"])
    return _summarise("genres", accs, plan.classes, confusion, chosen)


def transfer_runs(
    runs: Sequence[str | Path],
    *,
    store: Any,
    config: TransferConfig = TransferConfig(),
    baselines: Iterable[str] = BASELINES,
    dataset: str | None = None,
) -> TransferResult:
    """:func:`transfer` for trained run folders, named by their concept."""
    from .evaluate import load_run_model

    infos = [(Path(r), load_run_model(r)[1]) for r in runs]
    names = model_names(infos)
    return transfer({n: Path(r) for n, r in zip(names, runs)}, store=store, config=config, baselines=baselines, dataset=dataset)


def transfer_store(
    *,
    store: str | Path | None = None,
    catalog: str | Path | None = None,
    store_dir: str | Path | None = None,
    feature_config: Any = None,
) -> Any:
    """The FeatureStore of a transfer collection, preparing it from a catalog if needed.

    Parameters
    ----------
    store : an existing store folder, or
    catalog : a catalog CSV with a genre column; its store is prepared (resumably)
        in ``store_dir`` (default ``<catalog folder>/<catalog stem>.store``)
    feature_config : front-end settings for preparing (the model's)
    """
    from .store import FeatureStore, prepare

    if (store is None) == (catalog is None):
        raise ConfigError("give exactly one of --store STORE or --catalog CATALOG for the transfer collection")
    if store is not None:
        return FeatureStore(store)
    from .catalog import read_csv

    catalog = Path(catalog)
    target = Path(store_dir) if store_dir is not None else catalog.with_suffix(".store")
    prepare(read_csv(catalog), target, config=feature_config)
    return FeatureStore(target)
