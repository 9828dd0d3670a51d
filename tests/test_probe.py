"""The linear probe on cached vectors: the authors' SGD probe, the Adam grid, standardisation, trial summaries."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from musicrep.errors import ConfigError
from musicrep.evaluation.probe import (
    ProbeConfig,
    ProbeResult,
    linear_probe,
    trial_summary,
)
from musicrep.evaluation.probe_fit import fit_sgd_probe, standardize_features

FAST = ProbeConfig(seeds=(0, 1))
ADAM = dataclasses.replace(FAST, probe="adam_grid", l2_grid=(0.0, 1e-2), lr_grid=(1e-2,), probe_epochs=60,
                           probe_eval_every=10)


def blobs(n, d, k, *, sep, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * sep
    y = rng.integers(0, k, size=n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def probe(x, y, k, config=FAST):
    n = len(x)
    a, b = int(0.6 * n), int(0.8 * n)
    return linear_probe(x_train=x[:a], y_train=y[:a], x_valid=x[a:b], y_valid=y[a:b], x_test=x[b:], y_test=y[b:],
                        classes=[f"c{i}" for i in range(k)], config=config)


def test_the_default_probe_is_the_authors():
    c = ProbeConfig()
    assert (c.probe, c.standardize, c.probe_lr, c.probe_momentum, c.probe_batch_size, c.probe_patience) == (
        "sgd", "scalar", 0.01, 0.9, 16, 8)
    assert c.seeds == tuple(range(10))
    with pytest.raises(ConfigError, match="probe='lbfgs'"):
        ProbeConfig(probe="lbfgs")
    with pytest.raises(ConfigError, match="standardize"):
        dataclasses.replace(c, standardize="minmax")


@pytest.mark.parametrize("config", [FAST, ADAM], ids=["sgd", "adam_grid"])
def test_probe_separates_separable_embeddings(config):
    x, y = blobs(600, 32, 4, sep=3.0, seed=0)
    res = probe(x, y, 4, config)
    assert res.accuracy_mean > 0.95
    assert len(res.accuracies) == 2 and len(res.chosen) == 2 and res.n_trials == 2
    cm = np.asarray(res.confusion)
    assert cm.shape == (4, 4) and cm.sum() == 2 * 120  # summed over the two seeds
    assert np.trace(cm) / cm.sum() == pytest.approx(res.accuracy_mean)
    keys = {"epochs", "stopped_epoch", "valid_loss"} if config.probe == "sgd" else {"l2", "lr", "epochs"}
    assert keys | {"valid_accuracy", "seed"} <= set(res.chosen[0])


def test_probe_is_at_chance_on_shuffled_labels():
    x, y = blobs(900, 32, 3, sep=3.0, seed=1)
    y = np.random.default_rng(5).permutation(y)
    res = probe(x, y, 3)
    assert res.accuracy_mean < 0.5  # chance 1/3


def test_probe_is_deterministic():
    x, y = blobs(200, 8, 3, sep=1.0, seed=2)
    assert probe(x, y, 3).accuracies == probe(x, y, 3).accuracies


def test_the_ten_trials_differ_on_a_noisy_problem():
    x, y = blobs(400, 16, 3, sep=0.4, seed=3)  # overlapping classes: many borderline songs
    res = probe(x, y, 3, ProbeConfig())
    assert len(res.accuracies) == 10 and len(set(res.accuracies)) > 2
    assert res.accuracy_std > 0.005  # init and minibatch order change the answer
    assert res.ci95_low < res.accuracy_mean < res.ci95_high
    assert len({c["stopped_epoch"] for c in res.chosen}) > 1


def _with_near_constant_column(x, n_train):
    """A column constant up to float jitter on train, and a tiny bit off on the other songs."""
    col = np.full((len(x), 1), 2.0, dtype=np.float64)
    col[:n_train, 0] += np.random.default_rng(0).normal(size=n_train) * 1e-6
    col[n_train:, 0] += 1e-3
    return np.concatenate([x, col], axis=1)


@pytest.mark.parametrize("kind", ["scalar", "per_dim"])
def test_a_near_constant_feature_cannot_blow_up_the_probe(kind):
    x, y = blobs(300, 8, 3, sep=2.0, seed=4)
    n_train = int(0.6 * len(x))
    x2 = _with_near_constant_column(x, n_train)
    xtr, xte = standardize_features(x2[:n_train], x2[n_train:], kind=kind)
    assert np.abs(xte[:, -1] - xtr[:, -1].mean()).max() < 0.2  # a per-dimension z-score with a 1e-8 floor: ~1000
    cfg = dataclasses.replace(FAST, standardize=kind)
    without, with_col = probe(x, y, 3, cfg), probe(x2, y, 3, cfg)
    assert without.accuracy_mean > 0.9
    assert with_col.accuracy_mean == pytest.approx(without.accuracy_mean, abs=0.02)
    assert all(np.isfinite(c["valid_loss"]) for c in with_col.chosen)


def test_early_stopping_stops_on_validation_loss_and_keeps_the_best_epoch():
    x, y = blobs(120, 60, 3, sep=0.3, seed=5)  # few songs, many dimensions: overfits fast
    xtr, xva = standardize_features(x[:60], x[60:])
    w, b, info = fit_sgd_probe(x_train=xtr, y_train=y[:60], x_valid=xva, y_valid=y[60:], n_classes=3,
                               config=ProbeConfig(), seed=0)
    hist = info["history"]
    assert info["stopped_epoch"] < ProbeConfig().probe_max_epochs
    assert info["stopped_epoch"] == info["epochs"] + 8 == len(hist)  # patience 8
    assert info["valid_loss"] == pytest.approx(min(hist)) and hist[info["epochs"] - 1] == min(hist)
    assert hist[-1] > min(hist)
    logits = xva @ w + b  # the kept weights are the best epoch's
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert -logp[np.arange(60), y[60:]].mean() == pytest.approx(info["valid_loss"])
    capped = fit_sgd_probe(x_train=xtr, y_train=y[:60], x_valid=xva, y_valid=y[60:], n_classes=3,
                           config=ProbeConfig(probe_max_epochs=3), seed=0)[2]
    assert capped["stopped_epoch"] == 3 and len(capped["history"]) == 3


def test_trial_summary_and_its_interval():
    mean, std, low, high = trial_summary([0.5, 0.6, 0.7])
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t(0.975, df=2) * s / sqrt(n)
    assert (mean, std) == (pytest.approx(0.6), pytest.approx(0.1))
    assert (low, high) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    assert trial_summary([0.8]) == (0.8, 0.0, None, None)
    assert trial_summary([0.0, 1.0])[2:] == (0.0, 1.0)  # t-interval +-6.35: clipped to an accuracy's range
    # results written before the interval existed get it on loading
    old = {"method": "m", "accuracy_mean": 0.6, "accuracy_std": 0.08, "accuracies": [0.5, 0.6, 0.7],
           "classes": ["a", "b"], "confusion": [[1, 0], [0, 1]], "chosen": []}
    res = ProbeResult.from_dict(old)
    assert res.n_trials == 3 and res.ci95_low == pytest.approx(0.6 - half)
