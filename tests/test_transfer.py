"""Transfer (Table 2): its settings, the trials and their splits, the whole test with its baselines, overlap warnings."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from musicrep.evaluation import baselines, probe
from musicrep.evaluation.baselines import BaselineConfig
from musicrep.data.catalog import Track
from musicrep.config import load_config
from musicrep.errors import ConfigError
from musicrep.errors import EvaluationError
from musicrep.evaluation.probe import ProbeConfig
from musicrep.data.store import from_arrays as write_store
from musicrep.evaluation.transfer import (
    TransferConfig,
    TransferResult,
    dataset_split,
    transfer,
    transfer_runs,
    trial_plan,
)

FAST = TransferConfig(seeds=(0, 1), cnn_steps=6, cnn_eval_every=3, cnn_batch_size=8)


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
    # the probe's and the baselines' settings are theirs, kept flat: one --set key each
    assert isinstance(c, BaselineConfig) and isinstance(c, ProbeConfig)
    assert load_config(TransferConfig, overrides=["probe_lr=0.5", "cnn_steps=7"]).probe_lr == 0.5


def test_the_names_that_moved_out_are_still_importable_from_transfer():
    import musicrep.evaluation.transfer as tr

    for name in tr.__all__:
        assert hasattr(tr, name), name
    assert tr.ProbeResult is probe.ProbeResult and tr.linear_probe is probe.linear_probe
    assert tr.summary_features is baselines.summary_features and tr.DISPLAY is baselines.DISPLAY


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
    return write_store(tmp_path_factory.mktemp("tr") / "genres", tracks=tracks, frames=frames)


def test_transfer_with_all_baselines(genre_store):
    torch.manual_seed(0)
    from musicrep.training.model import Encoder

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
    from musicrep.training.checkpoint import save_checkpoint
    from musicrep.config import to_dict
    from musicrep.training.model import Encoder
    from musicrep.data.splits import Split

    root.mkdir(parents=True)
    torch.manual_seed(0)
    enc = Encoder(width=4)
    model_config = dataclasses.asdict(enc.model_config) if hasattr(enc, "model_config") else {"width": 4, "n_mels": 128}
    save_checkpoint({"model": enc.state_dict(), "model_config": model_config,
                     "feature_config": to_dict(store.feature_config), "concept": concept, "config": {}},
                    path=root / "best.pt")
    (root / "config.yaml").write_text(f"concept: {concept}\n")
    (root / "run.json").write_text(json.dumps({"store": str(store.path)}))
    rows = tuple((t, "artist", "train") for t in train_ids) + (("held-out", "artist", "test"),)
    Split(concept=concept, rows=rows).write_csv((root / "split").joinpath(f"{concept}.csv"))
    (root / "DONE").write_text("done\n")  # a finished run: unfinished ones are refused
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
    clean = write_store(tmp_path / "clean", tracks=tracks, frames=[rng.normal(size=(150, 128)).astype(np.float32) for _ in tracks])
    res = transfer_runs([run], store=clean, config=cfg, baselines=())
    assert res.warnings == [] and "WARNING" not in res.table()


def test_unknown_baseline_is_rejected(genre_store):
    with pytest.raises(ConfigError, match="baseline"):
        transfer({}, store=genre_store, config=FAST, baselines=("vggish",))


def test_a_small_test_part_is_said_in_the_table(genre_store):
    from musicrep.evaluation.transfer import MIN_TEST_SONGS, small_test_caveats

    res = transfer({}, store=genre_store, config=dataclasses.replace(FAST, seeds=(0,)), baselines=("mfcc",))
    (caveat,) = res.caveats  # 36 songs: about 6 test songs per trial
    n_test = res.counts["test"]
    assert n_test < MIN_TEST_SONGS and caveat.startswith(f"each trial's test accuracy rests on {n_test} test songs")
    assert f"NOTE: {caveat}" in res.table() and TransferResult.from_dict(res.to_dict()).caveats == [caveat]
    big = trial_plan([Track(track_id=f"{g}{i}", path="/x", genre=g) for g in "ab" for i in range(200)],
                     track_ids=[f"{g}{i}" for g in "ab" for i in range(200)], config=FAST)
    assert small_test_caveats(big) == []
