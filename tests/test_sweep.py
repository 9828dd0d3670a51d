"""Sweeps (Tables 3 and 4): one joint model per value, resumable."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from musicrep.catalog import Track
from musicrep.checkpoint import save_checkpoint
from musicrep.config import to_dict
from musicrep.errors import ConfigError, SplitError
from musicrep.model import Encoder
from musicrep.splits import artist_split, write_splits
from musicrep.store import FeatureStore
from musicrep.store import from_arrays as write_store
from musicrep.sweep import load_sweep, point_config, run_sweep
from musicrep.train import TrainConfig
from musicrep.transfer import TransferConfig

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
    return write_store(tmp_path_factory.mktemp("sw") / "store", tracks, frames)


class FakeTrain:
    """Stands in for musicrep.train.train: writes a finished run and counts its calls."""

    def __init__(self, fail_on=()):
        self.calls = []
        self.fail_on = set(fail_on)

    def __call__(self, store_path, out_dir, config, *, resume=False):
        self.calls.append((config.negatives, config.n_artists, config.concept, resume))
        if config.negatives in self.fail_on:
            raise SplitError(f"cannot make a split for negatives={config.negatives}")
        store = FeatureStore(store_path)
        torch.manual_seed(config.negatives)
        enc = Encoder(width=4)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint({"model": enc.state_dict(), "model_config": {"width": 4, "n_mels": 128},
                         "feature_config": to_dict(store.feature_config), "concept": config.concept,
                         "config": to_dict(config)}, out_dir / "best.pt")
        split = artist_split(catalog=store.catalog, songs_per_artist=6, n_valid=1, n_test=2)
        write_splits({"artist": split}, out_dir / "split")
        (out_dir / "DONE").write_text("done\n")
        return out_dir


def test_sweep_trains_each_point_once_and_resumes(store, tmp_path):
    fake = FakeTrain()
    out = tmp_path / "sweep"
    kw = dict(kind="negatives", store=store.path, transfer_store=store.path, out_dir=out,
              train_config=TrainConfig(), transfer_config=FAST, holdout_trials=20, train_fn=fake)
    first = run_sweep(values=[1, 2], **kw)
    assert [c[0] for c in fake.calls] == [1, 2]
    assert all(c[2] == "joint" for c in fake.calls)  # sweeps train joint models
    assert [p.status for p in first.points] == ["done", "done"]
    assert set(first.points[0].holdout) == {"artist", "track"}
    mtime = (out / "negatives-1" / "result.json").stat().st_mtime_ns

    again = run_sweep(values=[1, 2], **kw)
    assert len(fake.calls) == 2  # nothing retrained
    assert (out / "negatives-1" / "result.json").stat().st_mtime_ns == mtime
    assert [p.transfer for p in again.points] == [p.transfer for p in first.points]

    more = run_sweep(values=[1, 2, 4], **kw)
    assert [c[0] for c in fake.calls] == [1, 2, 4]
    assert [p.value for p in more.points] == [1, 2, 4]
    loaded = load_sweep(out)
    assert [p.value for p in loaded.points] == [1, 2, 4] and loaded.kind == "negatives"


def test_a_trained_run_is_only_evaluated(store, tmp_path):
    fake = FakeTrain()
    out = tmp_path / "sweep"
    fake(store.path, out / "negatives-3" / "run", dataclasses.replace(TrainConfig(), negatives=3, concept="joint"))
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
    assert [c[0] for c in retry.calls] == [2]
    assert [p.status for p in res.points] == ["done", "done"]


def test_settings_changed_under_a_sweep_folder_are_refused(store, tmp_path):
    kw = dict(kind="negatives", values=[1], store=store.path, transfer_store=store.path, out_dir=tmp_path / "s",
              transfer_config=FAST, holdout_trials=0, train_fn=FakeTrain())
    run_sweep(train_config=TrainConfig(), **kw)
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep(train_config=TrainConfig(width=64), **kw)


def test_point_config():
    cfg = point_config("artists", 500, TrainConfig(concept="artist"))
    assert cfg.n_artists == 500 and cfg.concept == "joint"
    assert point_config("negatives", 8, TrainConfig()).negatives == 8
    with pytest.raises(ConfigError):
        point_config("margins", 1, TrainConfig())
    with pytest.raises(ConfigError):
        point_config("negatives", 0, TrainConfig())


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
    assert first.splitlines()[0].split() == ["negatives", "transfer", "artist", "album", "track"]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("negatives-*/run/best.pt")}
    assert len(stamps) == 2 and all((p.parent / "DONE").is_file() for p in stamps)
    assert main(argv) == 0
    assert capsys.readouterr().out == first  # the same numbers, read back
    assert {p: p.stat().st_mtime_ns for p in out.glob("negatives-*/run/best.pt")} == stamps  # nothing retrained
