"""Sweeps (Tables 3 and 4): one joint model per value, resumable."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml

from musicrep.data.catalog import Track
from musicrep.training.checkpoint import save_checkpoint
from musicrep.config import save_config, to_dict
from musicrep.errors import ConfigError, SplitError
from musicrep.training.model import Encoder, ModelConfig
from musicrep.data.splits import artist_split, write_splits
from musicrep.data.store import FeatureStore
from musicrep.data.store import from_arrays as write_store
from musicrep.evaluation.sweep import (
    SweepPoint,
    SweepResult,
    load_sweep,
    read_validation,
    run_sweep,
)
from musicrep.evaluation.sweep_plan import format_value, point_config, point_name
from musicrep.training.settings import TrainConfig
from musicrep.evaluation.transfer import TransferConfig

FAST = TransferConfig(seeds=(0,), l2_grid=(1e-3,), lr_grid=(1e-2,), probe_epochs=20, probe_eval_every=10)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    tracks, frames = [], []
    for a in range(4):
        for s in range(6):
            tracks.append(Track(track_id=f"a{a}s{s}", path=f"/x/{a}{s}.wav", artist=f"A{a}", album=f"A{a}-album",
                                genre=("x", "y")[a % 2]))
            frames.append((rng.normal(size=(300, 128)) * 0.2 + 1 + 0.5 * (a % 2)).astype(np.float32))
    return write_store(tmp_path_factory.mktemp("sw") / "store", tracks=tracks, frames=frames)


class FakeTrain:
    """Stands in for musicrep.training.train.train: writes a finished run (best.pt, split, config.yaml,
    metrics.csv) and counts its calls.

    ``valid(config)`` gives the run's validation rows [(valid_loss, valid_acc), ...], one per epoch.
    """

    def __init__(self, fail_on=(), valid=None):
        self.calls = []
        self.fail_on = set(fail_on)
        self.valid = valid or (lambda config: [(1.0, 0.5)])

    def __call__(self, store_path, *, out_dir, config, resume=False):
        self.calls.append(dict(to_dict(config), resume=resume))
        if config.negatives in self.fail_on:
            raise SplitError(f"cannot make a split for negatives={config.negatives}")
        store = FeatureStore(store_path)
        torch.manual_seed(config.negatives)
        enc = Encoder(width=4, **getattr(ModelConfig, "LEGACY", {}))  # what a checkpoint saying only the width holds
        out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint({"model": enc.state_dict(), "model_config": {"width": 4, "n_mels": 128},
                         "feature_config": to_dict(store.feature_config), "concept": config.concept,
                         "config": to_dict(config)}, path=out_dir / "best.pt")
        split = artist_split(catalog=store.catalog, songs_per_artist=6, n_valid=1, n_test=2)
        write_splits({"artist": split}, folder=out_dir / "split")
        save_config(config, path=out_dir / "config.yaml")
        write_metrics(out_dir / "metrics.csv", self.valid(config), config.concepts)
        (out_dir / "DONE").write_text("done\n")
        return out_dir


def write_metrics(path, rows, concepts):
    """A metrics.csv as training writes it: per-concept columns equal to the totals' share."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "step", "lr", "train_loss", "valid_loss", "valid_acc"]
                   + [f"{k}_{c}" for c in concepts for k in ("valid_loss", "valid_acc")])
        for e, (loss, acc) in enumerate(rows, start=1):
            w.writerow([e, 10 * e, 0.1, 2.0, loss, acc] + [x for _ in concepts for x in (loss / len(concepts), acc)])


def calls(fake, *keys):
    return [tuple(c[k] for k in keys) if len(keys) > 1 else c[keys[0]] for c in fake.calls]


def test_sweep_trains_each_point_once_and_resumes(store, tmp_path):
    fake = FakeTrain()
    out = tmp_path / "sweep"
    kw = dict(kind="negatives", store=store.path, transfer_store=store.path, out_dir=out,
              train_config=TrainConfig(), transfer_config=FAST, holdout_trials=20, train_fn=fake)
    first = run_sweep(values=[1, 2], **kw)
    assert calls(fake, "negatives") == [1, 2]
    assert calls(fake, "concept") == ["joint", "joint"]  # Table 3 sweeps train joint models
    assert [p.status for p in first.points] == ["done", "done"]
    assert set(first.points[0].holdout) == {"artist", "track"}
    assert first.points[0].concept == "joint" and set(first.points[0].transfer) >= {"mean", "std", "dataset"}
    mtime = (out / "negatives-1" / "result.json").stat().st_mtime_ns

    again = run_sweep(values=[1, 2], **kw)
    assert len(fake.calls) == 2  # nothing retrained
    assert (out / "negatives-1" / "result.json").stat().st_mtime_ns == mtime
    assert [p.transfer for p in again.points] == [p.transfer for p in first.points]

    more = run_sweep(values=[1, 2, 4], **kw)
    assert calls(fake, "negatives") == [1, 2, 4]
    assert [p.value for p in more.points] == [1, 2, 4]
    loaded = load_sweep(out)
    assert [p.value for p in loaded.points] == [1, 2, 4] and loaded.kind == "negatives"


def test_a_trained_run_is_only_evaluated(store, tmp_path):
    fake = FakeTrain()
    out = tmp_path / "sweep"
    fake(store.path, out_dir=out / "negatives-3" / "run", config=dataclasses.replace(TrainConfig(), negatives=3, concept="joint"))
    res = run_sweep(kind="negatives", values=[3], store=store.path, transfer_store=store.path, out_dir=out,
                    transfer_config=FAST, holdout_trials=0, train_fn=fake)
    assert len(fake.calls) == 1  # the one made above
    assert res.points[0].status == "done" and res.points[0].holdout == {}


def test_a_failed_point_is_retried_and_the_rest_go_on(store, tmp_path):
    out = tmp_path / "sweep"
    kw = dict(kind="negatives", values=[1, 2], store=store.path, transfer_store=store.path, out_dir=out,
              transfer_config=FAST, holdout_trials=0)
    res = run_sweep(train_fn=FakeTrain(fail_on={2}), **kw)
    assert [p.status for p in res.points] == ["done", "failed"]
    assert "negatives=2" in res.points[1].error
    assert not (out / "negatives-2" / "DONE").exists()
    retry = FakeTrain()
    res = run_sweep(train_fn=retry, **kw)
    assert calls(retry, "negatives") == [2]
    assert [p.status for p in res.points] == ["done", "done"]


def test_settings_changed_under_a_sweep_folder_are_refused(store, tmp_path):
    kw = dict(kind="negatives", values=[1], store=store.path, transfer_store=store.path, out_dir=tmp_path / "s",
              transfer_config=FAST, holdout_trials=0, train_fn=FakeTrain())
    run_sweep(train_config=TrainConfig(), **kw)
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep(train_config=TrainConfig(width=64), **kw)


def test_point_config():
    cfg = point_config("artists", value=500, base=TrainConfig(concept="artist"))
    assert cfg.n_artists == 500 and cfg.concept == "joint"  # Table 4 stays joint
    assert point_config("negatives", value=8, base=TrainConfig()).negatives == 8
    cfg = point_config("margin_album", value="0.3", base=TrainConfig(concept="artist"))
    assert cfg.margin_album == 0.3 and cfg.concept == "album"
    assert point_config("margin_album", value=0.3, base=TrainConfig(), concept="joint").concept == "joint"
    cfg = point_config("lr", value="1e-2", base=TrainConfig(concept="track"))
    assert cfg.lr == 0.01 and cfg.concept == "track"  # any other setting: the base config's concept
    assert point_config("concept", value="album", base=TrainConfig()).concept == "album"
    with pytest.raises(ConfigError, match="margin_artist"):  # the message lists the settings one can sweep
        point_config("margins", value=1, base=TrainConfig())
    with pytest.raises(ConfigError, match="negatives=0"):
        point_config("negatives", value=0, base=TrainConfig())
    with pytest.raises(ConfigError, match="changes nothing"):  # a track margin does not touch an album model
        point_config("margin_track", value=0.2, base=TrainConfig(), concept="album")


def test_margin_sweep_trains_the_margins_concept_without_transfer(store, tmp_path):
    fake = FakeTrain()
    out = tmp_path / "sweep"
    res = run_sweep(kind="margin_artist", values=["0.1", "0.4"], store=store.path, out_dir=out,
                    holdout_trials=0, train_fn=fake)
    assert calls(fake, "concept", "margin_artist") == [("artist", 0.1), ("artist", 0.4)]
    assert calls(fake, "margin_album") == [0.25, 0.25]  # the other margins stay fixed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["margin_artist-0.1", "margin_artist-0.4"]
    assert [p.value for p in res.points] == [0.1, 0.4] and all(isinstance(p.value, float) for p in res.points)
    assert [(p.status, p.concept, p.transfer, p.holdout) for p in res.points] == [("done", "artist", {}, {})] * 2
    assert res.field == "margin_artist" and res.concept == "artist" and res.dataset == ""
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["transfer_store"] is None and manifest["values"] == [0.1, 0.4]

    joint = FakeTrain()
    run_sweep(kind="margin_album", values=[0.2], store=store.path, out_dir=tmp_path / "joint",
              holdout_trials=0, train_fn=joint, concept="joint")
    assert calls(joint, "concept", "margin_album") == [("joint", 0.2)]


@pytest.mark.parametrize("kind, values, message", [
    ("margin_artist", ["0.2", "abc"], "margin_artist must be a number"),
    ("margin_artist", ["0.2", "-0.1"], "margin_artist=-0.1 is out of range"),
    ("negatives", [2, -1], "negatives=-1 is out of range"),
    ("negatives", [2, 0], "negatives=0 leaves an anchor nothing to beat"),
    ("batch_size", ["16", "2.5"], "batch_size must be an integer"),
    ("margins", ["0.1"], "neither a legacy kind"),
])
def test_values_are_checked_before_anything_trains(store, tmp_path, kind, values, message):
    fake = FakeTrain()
    with pytest.raises(ConfigError, match=message):
        run_sweep(kind=kind, values=values, store=store.path, out_dir=tmp_path / "s", holdout_trials=0,
                  train_fn=fake)
    assert fake.calls == []  # the good first value did not train either
    assert not (tmp_path / "s").exists()


def test_point_folder_names():
    assert point_name("margin_artist", value=0.4) == "margin_artist-0.4"
    assert point_name("lr", value=0.01) == "lr-0.01"
    assert point_name("lr", value=1e-05) == "lr-1e-05"
    assert point_name("negatives", value=4) == "negatives-4"
    assert point_name("nesterov", value=False) == "nesterov-false"
    assert point_name("n_artists", value=None) == "n_artists-none"
    assert point_name("optimizer", value="a/b c") == "optimizer-a_b_c"
    assert format_value(0.25) == "0.25" and format_value(True) == "true"


def test_equal_values_share_one_point(store, tmp_path):
    fake = FakeTrain()
    res = run_sweep(kind="lr", values=["0.01", "1e-2", "0.1"], store=store.path, out_dir=tmp_path / "s",
                    holdout_trials=0, train_fn=fake)
    assert calls(fake, "lr") == [0.01, 0.1]
    assert [p.value for p in res.points] == [0.01, 0.1]
    assert (tmp_path / "s" / "lr-0.01" / "DONE").is_file()


def test_read_validation_takes_the_best_checkpoint_of_the_runs_monitor(tmp_path):
    rows = [(1.0, 0.3), (0.6, 0.4), (0.7, 0.6), (0.6, 0.5)]  # lowest loss: epoch 2 (first of a tie); best acc: 3
    write_metrics(tmp_path / "metrics.csv", rows, ("artist", "album", "track"))
    save_config(TrainConfig(concept="joint"), path=tmp_path / "config.yaml")
    v = read_validation(tmp_path)
    assert (v["epoch"], v["monitor"], v["valid_loss"], v["valid_acc"]) == (2, "valid_loss", 0.6, 0.4)
    assert v["valid_loss_album"] == pytest.approx(0.2) and v["valid_acc_track"] == 0.4
    save_config(TrainConfig(concept="joint", monitor="valid_acc"), path=tmp_path / "config.yaml")
    v = read_validation(tmp_path, monitor="valid_loss")  # config.yaml wins over the fallback
    assert (v["epoch"], v["valid_acc"]) == (3, 0.6)
    assert read_validation(tmp_path / "nothing") == {}


def test_selection_uses_validation_accuracy_not_the_test(store, tmp_path, monkeypatch):
    import musicrep.evaluation.holdout as evaluate

    # (valid_loss, valid_acc) per epoch. Each wrong rule picks another margin: the lowest validation
    # loss picks 0.1 (a smaller margin gives a smaller hinge loss), the best accuracy of any epoch
    # (not the best checkpoint's) picks 0.3, the hold-out test picks 0.5. Validation accuracy at the
    # best checkpoint picks 0.2.
    valid = {0.1: [(0.05, 0.50)], 0.2: [(0.15, 0.75)], 0.3: [(0.30, 0.40), (0.20, 0.70), (0.25, 0.90)],
             0.5: [(0.50, 0.60)]}
    test = {0.1: 0.2, 0.2: 0.3, 0.3: 0.4, 0.5: 0.9}

    def fake_holdout(runs, *, store, n_trials):
        margin = yaml.safe_load((runs[0] / "config.yaml").read_text())["margin_artist"]
        return evaluate.HoldoutResult(models=["artist"], concepts=["artist"],
                                      accuracy={"artist": {"artist": test[margin]}}, stderr={"artist": {"artist": 0.0}},
                                      n_trials=n_trials, n_negatives=4, seed=0, chance=0.2)

    monkeypatch.setattr(evaluate, "holdout_runs", fake_holdout)
    fake = FakeTrain(valid=lambda config: valid[config.margin_artist])
    out = tmp_path / "sweep"
    res = run_sweep(kind="margin_artist", values=[0.5, 0.1, 0.3, 0.2], store=store.path, out_dir=out,
                    holdout_trials=10, train_fn=fake)
    assert [p.holdout["artist"] for p in res.points] == [0.9, 0.2, 0.4, 0.3]
    assert (res.points[2].validation["epoch"], res.points[2].validation["valid_acc"]) == (2, 0.7)
    assert res.selected == 0.2
    marked = [line for line in res.table().splitlines() if line.startswith("*")]
    assert len(marked) == 1 and marked[0].split()[1:4] == ["0.2", "0.750", "1"]
    loaded = load_sweep(out)
    assert [p.value for p in loaded.points] == [0.1, 0.2, 0.3, 0.5]
    assert loaded.selected == 0.2 and loaded.to_dict()["selected"] == 0.2
    assert SweepResult.from_dict(json.loads(json.dumps(loaded.to_dict()))).selected == 0.2


def test_selection_ties_go_to_the_lower_value_and_failed_points_are_skipped():
    def point(value, acc, status="done"):
        return SweepPoint(value=value, status=status, run="", validation={"valid_acc": acc})

    res = SweepResult(kind="margin_track", points=[point(0.4, 0.8), point(0.2, 0.8), point(0.3, 0.9, "failed"),
                                                   point(0.1, float("nan"))])
    assert res.selected == 0.2
    # 403 of 720 correct, summed in two orders: a tie, not a win by the last bits
    floaty = SweepResult(kind="augment", field="augment", points=[point("stretch", 0.5597222379098336),
                                                                   point("pitch", 0.5597222366680702)])
    assert floaty.selected == "pitch"
    assert SweepResult(kind="negatives", points=[point(1, 0.5, "failed")]).selected is None
    rows = res.table().splitlines()
    assert rows[0].split() == ["margin_track", "valid_acc", "epoch"]  # no transfer or hold-out: no columns
    assert [r.startswith("*") for r in rows[1:]] == [False, True, False, False]
    assert "failed" in rows[3]


def test_margin_sweep_resumes_and_adds_values(store, tmp_path):
    out = tmp_path / "sweep"
    kw = dict(kind="margin_track", store=store.path, out_dir=out, holdout_trials=0,
              train_config=TrainConfig(concept="joint"), concept="joint")
    fake = FakeTrain()
    run_sweep(values=["0.1", "0.2"], train_fn=fake, **kw)
    half = out / "margin_track-0.3" / "run"
    half.mkdir(parents=True)  # a run killed mid-training: no DONE yet
    res = run_sweep(values=["0.1", "0.2", "0.3"], train_fn=fake, **kw)
    assert calls(fake, "margin_track", "concept", "resume") == [(0.1, "joint", False), (0.2, "joint", False),
                                                                (0.3, "joint", True)]
    assert [p.value for p in res.points] == [0.1, 0.2, 0.3]
    assert json.loads((out / "sweep.json").read_text())["values"] == [0.1, 0.2, 0.3]
    with pytest.raises(ConfigError, match="concept"):  # the same folder, another concept
        run_sweep(values=["0.1"], train_fn=fake, **{**kw, "concept": "track"})
    assert len(fake.calls) == 3


def test_an_old_sweep_folder_loads_and_resumes(store, tmp_path):
    out = tmp_path / "old"
    run = out / "negatives-4" / "run"
    run.mkdir(parents=True)
    save_config(TrainConfig(concept="joint", negatives=4), path=run / "config.yaml")
    write_metrics(run / "metrics.csv", [(2.0, 0.3), (1.5, 0.45)], ("artist", "album", "track"))
    (out / "sweep.json").write_text(json.dumps({  # as sweeps wrote it before margins and validation
        "kind": "negatives", "field": "negatives", "values": [4], "store": str(store.path.resolve()),
        "transfer_store": str(store.path.resolve()), "train_config": to_dict(TrainConfig()),
        "transfer_config": to_dict(FAST), "holdout_trials": 0}))
    (out / "negatives-4" / "result.json").write_text(json.dumps({
        "value": 4, "status": "done", "run": str(run), "holdout": {},
        "transfer": {"mean": 0.61, "std": 0.02, "accuracies": [0.61], "dataset": "store"}, "error": "",
        "seconds": 3.0}))
    (out / "negatives-4" / "DONE").write_text("negatives=4\n")
    old = load_sweep(out)
    assert [(p.value, p.transfer["mean"]) for p in old.points] == [(4, 0.61)]
    assert old.points[0].validation["epoch"] == 2 and old.concept == "joint" and old.dataset == store.path.name
    assert old.points[0].validation["valid_acc"] == 0.45
    # the number of negatives changes the validation task (chance 1/(N+1)): nothing is selected
    assert not old.selectable and old.selected is None

    fake = FakeTrain()
    res = run_sweep(kind="negatives", values=[4, 8], store=store.path, transfer_store=store.path, out_dir=out,
                    transfer_config=FAST, holdout_trials=0, train_fn=fake)
    assert calls(fake, "negatives", "concept") == [(8, "joint")]  # 4 was done already
    assert [p.value for p in res.points] == [4, 8]


def test_cli_parses_any_setting_and_the_transfer_store_is_optional():
    from musicrep.cli import build_parser

    args = build_parser().parse_args(["sweep", "margin_artist", "0.1", "0.2", "0.3", "0.4", "0.5", "--store", "S",
                                      "-o", "OUT", "--set", "epochs=2"])
    assert (args.kind, args.values, args.transfer_store, args.set) == (
        "margin_artist", ["0.1", "0.2", "0.3", "0.4", "0.5"], [], ["epochs=2"])
    assert callable(args.func)
    from musicrep.evaluation.sweep import transfer_targets

    args = build_parser().parse_args(["sweep", "artists", "5", "--store", "S", "-o", "OUT", "--transfer-store",
                                      "w/stores/folk", "--transfer-store", "w/stores/essen"])
    assert transfer_targets(args.transfer_store) == {"folk": "w/stores/folk", "essen": "w/stores/essen"}
    with pytest.raises(ConfigError, match="share a folder name"):
        transfer_targets(["a/folk", "b/folk"])


def test_cli_margin_sweep_prints_the_selected_value(store, tmp_path, capsys, monkeypatch):
    import musicrep.training.train as train_module
    from musicrep.cli import main

    fake = FakeTrain(valid=lambda config: [(config.margin_artist, 0.9 - abs(config.margin_artist - 0.4))])
    monkeypatch.setattr(train_module, "train", fake)
    argv = ["-q", "sweep", "margin_artist", "0.2", "0.4", "0.5", "--store", str(store.path), "-o",
            str(tmp_path / "s"), "--trials", "0"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "selected by validation accuracy: margin_artist=0.4"
    assert calls(fake, "concept") == ["artist"] * 3
    assert main(argv[:-2] + ["--trials", "0", "-o", str(tmp_path / "j"), "--set", "concept=joint"]) == 0
    assert calls(fake, "concept")[3:] == ["joint"] * 3  # an explicit concept wins over the margin's
    assert main(["-q", "sweep", "margin_artist", "abc", "--store", str(store.path), "-o", str(tmp_path / "x")]) == 2
    assert "margin_artist must be a number" in capsys.readouterr().err


def test_cli_sweep_with_real_training_resumes(store, tmp_path, capsys):
    from musicrep.cli import main

    out = tmp_path / "sweep"
    argv = ["-q", "sweep", "negatives", "1", "2", "--store", str(store.path), "--transfer-store", str(store.path),
            "-o", str(out), "--trials", "20"]
    for kv in ("width=4", "epochs=1", "steps_per_epoch=2", "batch_size=4", "valid_batches=1", "songs_per_artist=6",
               "artist_valid=1", "artist_test=2", "songs_per_album=6", "album_valid=1", "album_test=2",
               "tensorboard=false", "prefetch=0", "threads=1"):
        argv += ["--set", kv]
    for kv in ("seeds=[0]", "probe_epochs=10", "l2_grid=[0.001]", "lr_grid=[0.01]"):
        argv += ["--transfer-set", kv]
    assert main(argv) == 0
    first = capsys.readouterr().out
    lines = first.splitlines()
    assert lines[0].split() == ["negatives", "valid_acc", "epoch", "transfer", "holdout_artist", "holdout_album",
                                "holdout_track"]
    assert [r.lstrip("* ").split()[2] for r in lines[1:3]] == ["1", "1"]  # best epoch of a one-epoch run
    assert load_sweep(out).selected is None  # validation accuracy at N=1 and N=2 is not on one scale
    assert lines[-1].startswith("nothing selected: negatives changes the validation task")
    assert not any(r.startswith("*") for r in lines[1:3])
    # the transfer store is the training store: every point says so, loudly
    warned = [line for line in lines if line.startswith("WARNING: negatives=")]
    assert len(warned) == 2 and all("training songs of this encoder" in w for w in warned)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("negatives-*/run/best.pt")}
    assert len(stamps) == 2 and all((p.parent / "DONE").is_file() for p in stamps)
    assert main(argv) == 0
    assert capsys.readouterr().out == first  # the same numbers, read back
    assert {p: p.stat().st_mtime_ns for p in out.glob("negatives-*/run/best.pt")} == stamps  # nothing retrained


def test_a_sweep_tests_every_transfer_target_and_runs_per_seed(store, tmp_path):
    fake = FakeTrain()
    targets = {"first": store.path, "second": store.path}
    results = []
    for seed in (0, 1):
        out = tmp_path / f"seed-{seed}"
        results.append(run_sweep(kind="artists", values=[2, 4], store=store.path, transfer_store=targets, out_dir=out,
                                 train_config=dataclasses.replace(TrainConfig(), seed=seed), transfer_config=FAST,
                                 holdout_trials=20, train_fn=fake, concept="artist"))
    assert calls(fake, "seed") == [0, 0, 1, 1] and set(calls(fake, "concept")) == {"artist"}
    for res in results:
        assert res.datasets == ["first", "second"] and res.dataset == "first"
        for p in res.points:
            assert set(p.transfers) == {"first", "second"} and p.transfer == p.transfers["first"]
            assert 0.0 <= p.transfers["second"]["mean"] <= 1.0
    loaded = load_sweep(tmp_path / "seed-1")
    assert loaded.seed == 1 and loaded.datasets == ["first", "second"]
    assert [p.transfers for p in loaded.points] == [p.transfers for p in results[1].points]
    manifest = json.loads((tmp_path / "seed-1" / "sweep.json").read_text())
    assert set(manifest["transfer_stores"]) == {"first", "second"}


def test_cli_games_sweep_trains_on_nested_games_and_prints_every_transfer_target(store, tmp_path, capsys):
    from musicrep.cli import main
    from musicrep.data.splits import load_splits

    second = tmp_path / "second"
    second.symlink_to(store.path)  # a second transfer target (another folder name, the same songs)
    out = tmp_path / "sweep"
    argv = ["-q", "sweep", "games", "3", "4", "--store", str(store.path), "--transfer-store", str(store.path),
            "--transfer-store", str(second), "-o", str(out), "--trials", "20"]
    for kv in ("concept=track", "game_column=album", "negatives=1", "width=4", "epochs=1", "steps_per_epoch=2", "batch_size=4",
               "valid_batches=1", "songs_per_artist=6", "artist_valid=1", "artist_test=2", "songs_per_album=6",
               "album_valid=1", "album_test=2", "tensorboard=false", "prefetch=0", "threads=1"):
        argv += ["--set", kv]
    for kv in ("seeds=[0]", "probe_epochs=10", "l2_grid=[0.001]", "lr_grid=[0.01]"):
        argv += ["--transfer-set", kv]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["games", "valid_acc", "epoch", f"transfer_{store.path.name}", "transfer_second",
                                "holdout_artist", "holdout_album", "holdout_track"]
    assert all(len(r.lstrip("* ").split()) == 8 for r in lines[1:3])  # every point has both transfer figures
    result = load_sweep(out)
    assert [p.value for p in result.points] == [3, 4] and result.concept == "track"
    assert result.selected is None  # the number of games changes the validation songs
    albums = {t.track_id: t.album for t in store.catalog}
    used = [{albums[tid] for s in load_splits(out / f"games-{n}" / "run" / "split").values() for tid, _, _ in s.rows}
            for n in (3, 4)]
    assert [len(u) for u in used] == [3, 4] and used[0] < used[1]  # nested: the fourth game is added
