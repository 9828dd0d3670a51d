"""The linear probe on cached song vectors, its settings, and its trials.

The default probe is the authors' (their 2018 Keras code, see shared/DESIGN.md):

- one *scalar* standardisation: a single mean and standard deviation over all
  values of the training features (``standardize="scalar"``);
- a linear softmax layer (Glorot-uniform weights and zero bias, as Keras
  initialises a Dense layer) trained with cross-entropy;
- SGD, learning rate 0.01, Nesterov momentum 0.9, minibatches of 16 songs drawn in
  a new order every epoch;
- early stopping on the validation loss with patience 8; the weights of the epoch
  with the lowest validation loss are kept;
- one fit per trial, each with its own initialisation and minibatch order; reported:
  the mean, sample std and Student-t 95 % interval over trials (:func:`trial_summary`).

Departures, each a setting of :class:`ProbeConfig`:

- ``probe_max_epochs`` (500) caps training, where the authors rely on early
  stopping alone;
- ``standardize="per_dim"``: a z-score per dimension, whose standard deviation is
  floored at :data:`~musicrep.evaluation.probe_fit.PER_DIM_FLOOR` times the mean per-dimension standard deviation,
  so that a unit nearly constant on the training songs cannot blow up on test songs;
- ``probe="adam_grid"``: the earlier probe of this project (full-batch Adam, the L2
  penalty, learning rate and number of epochs chosen on validation accuracy).

The fitting itself (standardisation, SGD with early stopping) is in
:mod:`musicrep.evaluation.probe_fit`. :class:`Trial` and :class:`TrialPlan` are defined here, where the probe consumes
them; :func:`musicrep.evaluation.transfer.trial_plan` draws them for a collection.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from ..config import setting
from ..errors import ConfigError, EvaluationError
from .probe_fit import STANDARDIZATIONS, SGDProbeSettings, fit_sgd_probe, standardize_features

log = logging.getLogger(__name__)

PROBES: tuple[str, ...] = ("sgd", "adam_grid")


@dataclasses.dataclass(frozen=True)
class ProbeConfig(SGDProbeSettings):
    """Settings of the linear probe; :class:`musicrep.evaluation.transfer.TransferConfig` extends them.

    The defaults are the authors' probe (see the module docstring). ``probe="adam_grid"``
    uses ``l2_grid``, ``lr_grid``, ``probe_epochs`` and ``probe_eval_every``; ``seeds``:
    one trial per seed in :func:`linear_probe`.
    """

    probe: str = setting("sgd", choices=PROBES)
    l2_grid: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    lr_grid: tuple[float, ...] = (1e-3, 1e-2)
    probe_epochs: int = setting(300, min=1)
    probe_eval_every: int = setting(10, min=1)

    def __post_init__(self) -> None:
        # load_config checks every range; this catches a bad choice made in code
        for key, choices in (("probe", PROBES), ("standardize", STANDARDIZATIONS)):
            if getattr(self, key) not in choices:
                raise ConfigError(f"{key}={getattr(self, key)!r} is not one of {list(choices)}")


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


def summarise(*, method: str, results: Sequence[tuple[float, np.ndarray, dict]], classes: Sequence[str]) -> ProbeResult:
    """One :class:`ProbeResult` from per-trial ``(test accuracy, confusion int [k, k], choices)``."""
    accs = [float(r[0]) for r in results]
    mean, std, low, high = trial_summary(accs)
    return ProbeResult(
        method=method, accuracy_mean=mean, accuracy_std=std, accuracies=accs, classes=list(classes),
        confusion=np.asarray(sum(r[1] for r in results)).tolist(), chosen=[r[2] for r in results],
        ci95_low=low, ci95_high=high, n_trials=len(accs),
    )


def score_trial(*, pred: np.ndarray, y_test: np.ndarray, n_classes: int, info: dict) -> tuple[float, np.ndarray, dict]:
    """One trial's ``(test accuracy, confusion int [k, k], info)`` from predictions int [n_test]."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)  # row: true class, column: predicted
    np.add.at(m, (y_test, pred), 1)
    return float((pred == y_test).mean()), m, info


# --------------------------------------------------------------------------- fitting


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
    n_classes: int, config: ProbeConfig, seed: int,
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
    x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray], *, n_classes: int, config: ProbeConfig, seed: int
) -> tuple[np.ndarray, dict]:
    """Standardise, fit the probe on train (stopped / chosen on valid), predict test:
    predicted classes int [n_test] and what was chosen on validation."""
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


# --------------------------------------------------------------------------- trials


def linear_probe(
    *,
    x_train: np.ndarray, y_train: np.ndarray,
    x_valid: np.ndarray, y_valid: np.ndarray,
    x_test: np.ndarray, y_test: np.ndarray,
    classes: Sequence[str],
    config: ProbeConfig = ProbeConfig(),
    method: str = "probe",
) -> ProbeResult:
    """Linear softmax classifier on one fixed split, one trial per seed.

    Only the initialisation and the minibatch order differ between trials here;
    :func:`musicrep.evaluation.transfer.transfer` also redraws the split per trial where the
    dataset has none.

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
    y_test, k = np.asarray(y_test, dtype=np.int64), len(classes)
    results = []
    for seed in config.seeds:
        pred, info = _fit_and_predict(x, y, n_classes=k, config=config, seed=seed)
        results.append(score_trial(pred=pred, y_test=y_test, n_classes=k, info=info))
    return summarise(method=method, results=results, classes=classes)


def probe_trial(
    *,
    features: np.ndarray, trial: Trial, n_classes: int, config: ProbeConfig = ProbeConfig()
) -> tuple[float, np.ndarray, dict]:
    """Test accuracy, confusion matrix int [k, k] and choices of one trial on features float [n, D]."""
    x = {part: features[rows] for part, rows in trial.index.items()}
    pred, info = _fit_and_predict(x, trial.y, n_classes=n_classes, config=config, seed=trial.seed)
    return score_trial(pred=pred, y_test=trial.y["test"], n_classes=n_classes, info={**info, "split_seed": trial.split_seed})


def probe_trials(method: str, *, features: np.ndarray, plan: TrialPlan, config: ProbeConfig = ProbeConfig()) -> ProbeResult:
    """The probe in every trial of ``plan`` on features float [len(plan.track_ids), D]."""
    k = len(plan.classes)
    results = [probe_trial(features=features, trial=t, n_classes=k, config=config) for t in plan.trials]
    res = summarise(method=method, results=results, classes=plan.classes)
    log.info("transfer %s: %.3f +- %.3f over %d trials", method, res.accuracy_mean, res.accuracy_std, res.n_trials)
    return res
