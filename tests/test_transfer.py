"""Transfer (Table 2): the linear probe, the split, the summary features and the baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from musicrep.catalog import Track
from musicrep.errors import ConfigError
from musicrep.evaluate import EvaluationError
from musicrep.store import from_arrays as write_store
from musicrep.transfer import (
    TransferConfig,
    TransferResult,
    dataset_split,
    linear_probe,
    summary_features,
    transfer,
)

FAST = TransferConfig(seeds=(0, 1), l2_grid=(0.0, 1e-2), lr_grid=(1e-2,), probe_epochs=60, probe_eval_every=10,
                      cnn_steps=6, cnn_eval_every=3, cnn_batch_size=8)






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


def test_probe_separates_separable_embeddings():
    x, y = blobs(600, 32, 4, sep=3.0, seed=0)
    res = probe(x, y, 4)
    assert res.accuracy_mean > 0.95
    assert len(res.accuracies) == 2 and len(res.chosen) == 2
    cm = np.asarray(res.confusion)
    assert cm.shape == (4, 4) and cm.sum() == 2 * 120  # summed over the two seeds
    assert np.trace(cm) / cm.sum() == pytest.approx(res.accuracy_mean)
    assert {"l2", "lr", "epochs", "valid_accuracy"} <= set(res.chosen[0])


def test_probe_is_at_chance_on_shuffled_labels():
    x, y = blobs(900, 32, 3, sep=3.0, seed=1)
    y = np.random.default_rng(5).permutation(y)
    res = probe(x, y, 3)
    assert res.accuracy_mean < 0.5  # chance 1/3


def test_probe_is_deterministic():
    x, y = blobs(200, 8, 3, sep=1.0, seed=2)
    assert probe(x, y, 3).accuracies == probe(x, y, 3).accuracies


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

    res = transfer({"enc": Encoder(width=4)}, store=genre_store, config=FAST, dataset="toy")
    assert list(res.methods) == ["enc", "genres", "random", "mfcc", "logmel"]
    assert res.dataset == "toy" and res.classes == ["folk", "jazz", "rock"]
    assert sum(res.counts.values()) == 36
    assert res.methods["logmel"].accuracy_mean == 1.0  # the genres differ in band energy
    assert res.methods["mfcc"].accuracy_mean > 0.9
    for name, r in res.methods.items():
        assert 0.0 <= r.accuracy_mean <= 1.0 and len(r.accuracies) == 2, name
    again = TransferResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again.methods["mfcc"].accuracies == res.methods["mfcc"].accuracies
    assert "genres (baseline)" in res.table()


def test_unknown_baseline_is_rejected(genre_store):
    with pytest.raises(ConfigError, match="baseline"):
        transfer({}, store=genre_store, config=FAST, baselines=("vggish",))
