"""Transfer (Table 2): the probe, the trials and their splits, the summary features and the baselines."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from musicrep.catalog import Track
from musicrep.config import load_config
from musicrep.errors import ConfigError
from musicrep.evaluate import EvaluationError
from musicrep.store import from_arrays as write_store
from musicrep.transfer import (
    ProbeResult,
    TransferConfig,
    TransferResult,
    dataset_split,
    fit_sgd_probe,
    linear_probe,
    standardize_features,
    summary_features,
    transfer,
    transfer_runs,
    trial_plan,
    trial_summary,
)

FAST = TransferConfig(seeds=(0, 1), cnn_steps=6, cnn_eval_every=3, cnn_batch_size=8)
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
    c = TransferConfig()
    assert (c.probe, c.standardize, c.probe_lr, c.probe_momentum, c.probe_batch_size, c.probe_patience) == (
        "sgd", "scalar", 0.01, 0.9, 16, 8)
    assert c.seeds == tuple(range(10)) and c.cnn_trials == 3
    with pytest.raises(ConfigError, match="probe"):
        load_config(TransferConfig, overrides=["probe=lbfgs"])
    with pytest.raises(ConfigError, match="probe_batch_size"):
        load_config(TransferConfig, overrides=["probe_batch_size=0"])
    with pytest.raises(ConfigError, match="standardize"):
        TransferConfig(standardize="minmax")


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
    res = probe(x, y, 3, TransferConfig())
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
                               config=TransferConfig(), seed=0)
    hist = info["history"]
    assert info["stopped_epoch"] < TransferConfig().probe_max_epochs
    assert info["stopped_epoch"] == info["epochs"] + 8 == len(hist)  # patience 8
    assert info["valid_loss"] == pytest.approx(min(hist)) and hist[info["epochs"] - 1] == min(hist)
    assert hist[-1] > min(hist)
    logits = xva @ w + b  # the kept weights are the best epoch's
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert -logp[np.arange(60), y[60:]].mean() == pytest.approx(info["valid_loss"])
    capped = fit_sgd_probe(x_train=xtr, y_train=y[:60], x_valid=xva, y_valid=y[60:], n_classes=3,
                           config=TransferConfig(probe_max_epochs=3), seed=0)[2]
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


def _catalog(n_per_class=10, classes=("a", "b", "c"), split=None):
    out = []
    for ci, c in enumerate(classes):
        for i in range(n_per_class):
            extra = {"split": split(i)} if split else {}
            out.append(Track(track_id=f"{c}{i}", path=f"/x/{c}{i}.wav", genre=c, artist=f"r{ci}", extra=extra))
    return out


def test_stratified_split_is_seeded_and_covers_every_class():
    labels, parts, source = dataset_split(_catalog(), config=TransferConfig(split_seed=3))
    assert source.startswith("stratified")
    for c in "abc":
        got = [parts[t] for t in labels if labels[t] == c]
        assert got.count("valid") >= 1 and got.count("test") >= 1 and got.count("train") >= 6
    assert dataset_split(_catalog(), config=TransferConfig(split_seed=3))[1] == parts
    assert dataset_split(_catalog(), config=TransferConfig(split_seed=4))[1] != parts


def test_the_datasets_own_split_is_used():
    names = {0: "training", 1: "validation", 2: "test"}
    cat = _catalog(split=lambda i: names.get(i % 4, ""))  # i % 4 == 3: outside the split
    labels, parts, source = dataset_split(cat, config=TransferConfig())
    assert source == "dataset"
    assert parts["a0"] == "train" and parts["a1"] == "valid" and parts["a2"] == "test"
    assert "a3" not in parts and "a3" not in labels


def _parts(plan, trial):
    return {plan.track_ids[i]: part for part, rows in trial.index.items() for i in rows}


def test_a_collection_without_a_split_gets_a_new_stratified_split_each_trial():
    cat = _catalog(n_per_class=20)
    plan = trial_plan(cat, track_ids=[t.track_id for t in cat], config=TransferConfig(seeds=(0, 1, 2), split_seed=5))
    assert [t.split_seed for t in plan.trials] == [5, 6, 7]
    splits = [_parts(plan, t) for t in plan.trials]
    assert splits[0] != splits[1] and splits[1] != splits[2] and splits[0] != splits[2]
    for trial, parts in zip(plan.trials, splits):  # each is the seeded stratified split of its split seed
        assert parts == dataset_split(cat, config=TransferConfig(split_seed=trial.split_seed))[1]
        assert {p: int(np.sum(np.array(list(parts.values())) == p)) for p in plan.counts} == plan.counts
        assert [plan.classes[c] for c in trial.y["test"]] == [
            t[0] for t in (plan.track_ids[i] for i in trial.index["test"])]  # labels follow the rows
    assert "drawn anew each trial" in plan.source


def test_a_collection_with_its_own_split_keeps_it_in_every_trial():
    names = {0: "training", 1: "validation", 2: "test"}
    cat = _catalog(split=lambda i: names[i % 3])
    plan = trial_plan(cat, track_ids=[t.track_id for t in cat], config=TransferConfig(seeds=(0, 1, 2)))
    assert [t.split_seed for t in plan.trials] == [None, None, None]
    splits = [_parts(plan, t) for t in plan.trials]
    assert splits[0] == splits[1] == splits[2] == dataset_split(cat)[1]
    assert plan.source.startswith("dataset") and "fixed" in plan.source


def test_one_class_is_a_clear_error():
    with pytest.raises(EvaluationError, match="two classes"):
        dataset_split(_catalog(classes=("a",)), config=TransferConfig())


def test_summary_features():
    frames = np.random.default_rng(0).normal(size=(300, 128)).astype(np.float32)
    assert summary_features(frames, kind="logmel").shape == (256,)
    m = summary_features(frames, kind="mfcc", n_mfcc=13)
    assert m.shape == (26,)
    # the 0th orthonormal DCT coefficient is the band mean times sqrt(128)
    assert m[0] == pytest.approx(frames.mean() * np.sqrt(128), rel=1e-4)
    with pytest.raises(ConfigError):
        summary_features(frames, kind="chroma")


@pytest.fixture(scope="module")
def genre_store(tmp_path_factory):
    """Three genres whose log-mel differ in level and in which bands are loud."""
    rng = np.random.default_rng(0)
    tracks, frames = [], []
    for gi, g in enumerate(("rock", "jazz", "folk")):
        for i in range(12):
            tracks.append(Track(track_id=f"{g}{i}", path=f"/x/{g}{i}.wav", genre=g, artist=f"{g}-artist{i % 3}"))
            f = rng.normal(size=(300, 128)).astype(np.float32) * 0.3 + 1.0
            f[:, gi * 40 : gi * 40 + 40] += 1.5
            frames.append(f)
    return write_store(tmp_path_factory.mktemp("tr") / "genres", tracks, frames)


def test_transfer_with_all_baselines(genre_store):
    torch.manual_seed(0)
    from musicrep.model import Encoder

    cfg = dataclasses.replace(FAST, seeds=(0, 1, 2), cnn_trials=2)
    res = transfer({"enc": Encoder(width=4)}, store=genre_store, config=cfg, dataset="toy")
    assert list(res.methods) == ["enc", "genres", "random", "mfcc", "logmel"]
    assert res.dataset == "toy" and res.classes == ["folk", "jazz", "rock"] and res.label_column == "genre"
    assert sum(res.counts.values()) == 36 and res.warnings == []  # an in-memory encoder: nothing to check
    assert res.methods["logmel"].accuracy_mean == 1.0  # the genres differ in band energy
    assert res.methods["mfcc"].accuracy_mean > 0.9
    for name, r in res.methods.items():
        n = 2 if name == "genres" else 3  # the genre CNN runs in the first cnn_trials trials only
        assert 0.0 <= r.accuracy_mean <= 1.0 and len(r.accuracies) == r.n_trials == n, name
        assert [c["split_seed"] for c in r.chosen] == [0, 1, 2][:n], name  # a new split per trial
        assert np.asarray(r.confusion).sum() == n * res.counts["test"], name
    again = TransferResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again.methods["mfcc"].accuracies == res.methods["mfcc"].accuracies
    assert again.label_column == "genre" and again.warnings == []
    table = res.table()
    assert "genres (baseline)" in table and "[95% CI]" in table and "WARNING" not in table
    r = res.methods["random"]
    assert f"{r.accuracy_mean:.3f} +- {r.accuracy_std:.3f} [{r.ci95_low:.3f}, {r.ci95_high:.3f}]" in table
    old = res.to_dict()
    del old["warnings"], old["label_column"]
    assert TransferResult.from_dict(old).warnings == []


def _run_folder(root, store, *, train_ids, concept="artist"):
    """A run folder by hand: checkpoint, config.yaml, run.json and split/<concept>.csv."""
    from musicrep.checkpoint import save_checkpoint
    from musicrep.config import to_dict
    from musicrep.model import Encoder
    from musicrep.splits import Split

    root.mkdir(parents=True)
    torch.manual_seed(0)
    enc = Encoder(width=4)
    model_config = dataclasses.asdict(enc.model_config) if hasattr(enc, "model_config") else {"width": 4, "n_mels": 128}
    save_checkpoint({"model": enc.state_dict(), "model_config": model_config,
                     "feature_config": to_dict(store.feature_config), "concept": concept, "config": {}},
                    root / "best.pt")
    (root / "config.yaml").write_text(f"concept: {concept}\n")
    (root / "run.json").write_text(json.dumps({"store": str(store.path)}))
    rows = tuple((t, "artist", "train") for t in train_ids) + (("held-out", "artist", "test"),)
    Split(concept=concept, rows=rows).write_csv((root / "split").joinpath(f"{concept}.csv"))
    return root


def test_transfer_on_the_training_store_warns_and_a_clean_store_does_not(genre_store, tmp_path, capsys):
    from musicrep.cli import main

    train_ids = [t for t in genre_store.track_ids if t.startswith(("rock", "jazz"))]  # 24 of 36
    run = _run_folder(tmp_path / "runs" / "artist", genre_store, train_ids=train_ids)
    cfg = dataclasses.replace(FAST, seeds=(0,))
    res = transfer_runs([run], store=genre_store, config=cfg, baselines=())
    (warning,) = res.warnings
    assert warning.startswith(f"{run}: 24 of 36 transfer songs are training songs of this encoder")
    assert "same audio content: 24" in warning
    assert f"WARNING: {warning}" in res.table().splitlines()
    assert main(["-q", "evaluate", "transfer", "--run", str(run), "--store", str(genre_store.path),
                 "--baselines", "--set", "seeds=[0]"]) == 0
    assert f"WARNING: {warning}" in capsys.readouterr().out.splitlines()

    rng = np.random.default_rng(1)
    tracks = [Track(track_id=f"new{g}{i}", path=f"/new/{g}{i}.wav", genre=g) for g in ("x", "y") for i in range(10)]
    clean = write_store(tmp_path / "clean", tracks, [rng.normal(size=(150, 128)).astype(np.float32) for _ in tracks])
    res = transfer_runs([run], store=clean, config=cfg, baselines=())
    assert res.warnings == [] and "WARNING" not in res.table()


def test_unknown_baseline_is_rejected(genre_store):
    with pytest.raises(ConfigError, match="baseline"):
        transfer({}, store=genre_store, config=FAST, baselines=("vggish",))
