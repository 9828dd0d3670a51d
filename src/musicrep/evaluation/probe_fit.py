"""Fitting a linear layer on cached song vectors: standardisation, and the authors'
minibatch SGD with Nesterov momentum stopped early on the validation loss.

Shared by the softmax probe of :mod:`musicrep.evaluation.probe` and the sigmoid tag
probe of :mod:`musicrep.evaluation.tagging`, whose settings (:class:`SGDProbeSettings`)
carry the same names and defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..config import setting
from ..errors import ConfigError

STANDARDIZATIONS: tuple[str, ...] = ("scalar", "per_dim")
#: ``standardize="per_dim"``: no dimension's std counts as less than this times the mean std
PER_DIM_FLOOR = 0.01


@dataclasses.dataclass(frozen=True)
class SGDProbeSettings:
    """The authors' probe training: trials, standardisation, SGD and early stopping.

    Shared by the softmax probe (:class:`ProbeConfig`) and the multi-label tag
    probe (:class:`musicrep.evaluation.tagging.TaggingConfig`), with the same names and defaults.
    """

    seeds: tuple[int, ...] = tuple(range(10))  # one trial per seed
    standardize: str = setting("scalar", choices=STANDARDIZATIONS)
    probe_lr: float = setting(0.01, min=0.0, min_exclusive=True)
    probe_momentum: float = setting(0.9, min=0.0, max=0.999)
    probe_batch_size: int = setting(16, min=1)
    probe_patience: int = setting(8, min=1)
    probe_max_epochs: int = setting(500, min=1)


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
    *,
    x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
    n_classes: int, config: SGDProbeSettings = SGDProbeSettings(), seed: int = 0,
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
    x, y = np.asarray(x_train, dtype=np.float64), np.asarray(y_train, dtype=np.int64)
    xv, yv = np.asarray(x_valid, dtype=np.float64), np.asarray(y_valid, dtype=np.int64)
    w, b, info = sgd_early_stopping(x=x, targets=np.eye(n_classes)[y], output=lambda z: np.exp(_log_softmax(z)),
                                    valid_loss=lambda w, b: _xent(xv, yv, w, b)[0], config=config, seed=seed)
    vloss, vacc = _xent(xv, yv, w, b)
    return w, b, {**info, "valid_loss": vloss, "valid_accuracy": vacc}


def sgd_early_stopping(
    *,
    x: np.ndarray, targets: np.ndarray, output: Callable[[np.ndarray], np.ndarray],
    valid_loss: Callable[[np.ndarray, np.ndarray], float], config: SGDProbeSettings, seed: int,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The authors' probe training for a linear layer whose loss gradient is ``output(logits) - targets``
    (softmax with cross-entropy, sigmoid with binary cross-entropy).

    Glorot-uniform weights and zero biases, minibatch SGD with Nesterov momentum in a
    new order every epoch, stopped when ``valid_loss(w, b)`` has not improved for
    ``probe_patience`` epochs; the weights of the best epoch are kept.

    Parameters
    ----------
    x : float64 [n, D] standardised training features
    targets : float [n, K] one-hot classes or 0/1 tags
    seed : draws the initial weights and each epoch's minibatch order

    Returns
    -------
    w : float64 [D, K], b : float64 [K] of the best epoch, and ``epochs`` (that
    epoch), ``stopped_epoch``, ``valid_loss`` (its loss), ``history`` (after each epoch)
    """
    rng = np.random.default_rng(seed)
    k = targets.shape[1]
    limit = np.sqrt(6.0 / (x.shape[1] + k))
    w, b = rng.uniform(-limit, limit, size=(x.shape[1], k)), np.zeros(k)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    lr, mu, bs = config.probe_lr, config.probe_momentum, config.probe_batch_size
    best = (float("inf"), 0, w.copy(), b.copy())  # as Keras: the first epoch always counts as an improvement
    history: list[float] = []
    epoch = wait = 0
    while epoch < config.probe_max_epochs and wait < config.probe_patience:
        epoch += 1
        order = rng.permutation(len(x))
        for start in range(0, len(x), bs):
            rows = order[start : start + bs]
            g = (output(x[rows] @ w + b) - targets[rows]) / len(rows)
            gw, gb = x[rows].T @ g, g.sum(axis=0)
            vw, vb = mu * vw + gw, mu * vb + gb  # Nesterov, as torch.optim.SGD(nesterov=True)
            w, b = w - lr * (gw + mu * vw), b - lr * (gb + mu * vb)
        history.append(valid_loss(w, b))
        if history[-1] < best[0]:
            best, wait = (history[-1], epoch, w.copy(), b.copy()), 0
        else:
            wait += 1
    return best[2], best[3], {"epochs": best[1], "stopped_epoch": epoch, "valid_loss": best[0], "history": history}
