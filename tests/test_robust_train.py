"""Training never gives a silently wrong run: one writer per run folder, exact resumes
(thread and process counts), no DONE for a diverged run, a named error on a full disk."""

from __future__ import annotations

import csv
import errno
import os
import subprocess
import sys
import time
import types

import pytest
import torch

import musicrep.training.train as train_module
from musicrep.training.checkpoint import read_checkpoint, save_checkpoint
from musicrep.config import load_config
from musicrep.errors import ConfigError, DiskFullError, TrainingError
from musicrep.testing import synth_collection
from test_train import _torchrun as torchrun
from musicrep.training.settings import TrainConfig
from musicrep.training.train import train

SETTINGS = ["concept=artist", "width=8", "negatives=2", "batch_size=4", "steps_per_epoch=4", "epochs=2",
            "valid_batches=1", "songs_per_artist=10", "tensorboard=false", "seed=3"]
ENV = {**os.environ, "MUSICREP_QUIET": "1", "OMP_NUM_THREADS": "1"}


def _config(*more: str) -> TrainConfig:
    return load_config(TrainConfig, path=None, overrides=SETTINGS + ["threads=1", *more])


def test_a_second_train_into_one_run_folder_fails_at_once(synth_store, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "musicrep", "-q", "train", "--store", str(synth_store.path), "-o", str(run),
            *[f"--set={s}" for s in SETTINGS + ["threads=1", "epochs=40", "steps_per_epoch=20"]]]
    first = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not (run / "config.yaml").is_file():
            assert first.poll() is None and time.time() < deadline, first.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        second = subprocess.run(args[:-1] + ["--set=seed=4"], env=ENV, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert f"is being written by PID {first.pid}" in second.stderr, second.stderr[-2000:]
        assert "seed: 3" in (run / "config.yaml").read_text()  # the first run's files, untouched
    finally:
        first.kill()
        first.wait()


def _one_epoch(store, run):
    train(store.path, out_dir=run, config=_config("epochs=1"))
    return read_checkpoint(run / "last.pt")


def test_resume_on_another_thread_count_is_refused_and_zero_follows_the_run(synth_store, tmp_path):
    run = tmp_path / "run"
    ckpt = _one_epoch(synth_store, run)
    assert ckpt["threads"] == 1 and ckpt["world_size"] == 1
    with pytest.raises(ConfigError, match=r"1 CPU thread\(s\); resuming with threads=2"):
        train(synth_store.path, out_dir=run, config=load_config(TrainConfig, path=None, overrides=SETTINGS + ["threads=2"]), resume=True)
    torch.set_num_threads(2)  # the caller's count; threads=0 must compute with the run's 1
    seen = []
    real = train_module.train_epoch

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    train_module.train_epoch = spy
    try:
        train(synth_store.path, out_dir=run, config=load_config(TrainConfig, path=None, overrides=SETTINGS + ["threads=0"]), resume=True)
    finally:
        train_module.train_epoch = real
        torch.set_num_threads(1)
    assert seen == [1] and (run / "DONE").is_file()


def test_resume_with_another_process_count_is_refused(synth_store, tmp_path):
    run = tmp_path / "run"
    ckpt = _one_epoch(synth_store, run)
    save_checkpoint({**ckpt, "world_size": 2}, path=run / "last.pt")  # as if torchrun --nproc_per_node 2 wrote it
    with pytest.raises(ConfigError, match=r"trained by 2 process\(es\) and this resume has 1"):
        train(synth_store.path, out_dir=run, config=_config(), resume=True)


def _validation(values):
    it = iter(values)

    def fake(model, samplers, *, config, d):
        v = next(it)
        return {"valid_loss": v, "valid_acc": 0.5, "valid_loss_artist": v, "valid_acc_artist": 0.5}
    return fake


def test_a_run_whose_validation_is_never_finite_gets_no_done(synth_store, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "validate", _validation([float("nan")] * 3))
    with pytest.raises(TrainingError, match="never finite in 3 epoch"):
        train(synth_store.path, out_dir=tmp_path / "run", config=_config("epochs=3", "monitor=valid_loss"))
    assert not (tmp_path / "run" / "DONE").exists() and not (tmp_path / "run" / "best.pt").exists()


def test_a_nan_first_validation_keeps_early_stopping(synth_store, tmp_path, monkeypatch):
    # NaN, then 1.0 (best), then two worse epochs: patience 2 stops after epoch 4
    monkeypatch.setattr(train_module, "validate", _validation([float("nan"), 1.0, 2.0, 3.0, 0.5, 0.4]))
    run = train(synth_store.path, out_dir=tmp_path / "run", config=_config("epochs=6", "patience=2", "monitor=valid_loss"))
    assert read_checkpoint(run / "best.pt")["epoch"] == 2 and read_checkpoint(run / "last.pt")["epoch"] == 4


def test_a_full_disk_names_the_folder_and_the_resume(synth_store, tmp_path, monkeypatch):
    def full(payload, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(train_module, "save_checkpoint", full)
    with pytest.raises(DiskFullError, match=r"run: the disk is full .*rerun with --resume"):
        train(synth_store.path, out_dir=tmp_path / "run", config=_config())
    # torch.save's C++ writer says so as a RuntimeError; it counts only when the disk is full
    monkeypatch.setattr(train_module, "save_checkpoint", lambda payload, path: (_ for _ in ()).throw(
        RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file")))
    with pytest.raises(RuntimeError, match="PytorchStreamWriter") as info:
        train(synth_store.path, out_dir=tmp_path / "run2", config=_config())
    assert not isinstance(info.value, DiskFullError)  # this disk has room: not misreported
    monkeypatch.setattr(train_module.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=10))
    with pytest.raises(DiskFullError):
        train(synth_store.path, out_dir=tmp_path / "run3", config=_config())


def test_a_resumed_run_is_unfinished_until_it_ends_again(synth_store, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _one_epoch(synth_store, run)
    assert (run / "DONE").is_file()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # killed during the resumed run's first epoch

    monkeypatch.setattr(train_module, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        train(synth_store.path, out_dir=run, config=_config("epochs=3"), resume=True)
    assert not (run / "DONE").exists()  # no longer looks finished


def test_the_same_audio_under_two_ids_is_never_trained_on_and_held_out(tmp_path):
    import dataclasses
    import shutil

    from musicrep.data.catalog import Catalog, read_csv
    from musicrep.data.splits import load_splits
    from musicrep.data.prepare import prepare
    from musicrep.data.store import duplicate_groups

    catalog = read_csv(synth_collection(tmp_path / "audio", n_artists=4, albums_per_artist=2, songs_per_album=5,
                                        seconds=4.0))
    original = catalog[0]
    copy = tmp_path / "audio" / "copy-of-first.flac"
    shutil.copy(original.path, copy)  # a re-rip under another id (and another artist, as a mislabel would)
    twin = dataclasses.replace(original, track_id="zz-copy", path=str(copy), artist=catalog[-1].artist)
    store = prepare(Catalog(list(catalog) + [twin]), out_dir=tmp_path / "store", workers=1).path
    assert duplicate_groups(store) == [sorted([original.track_id, "zz-copy"])]
    for seed in range(5):
        run = train(store, out_dir=tmp_path / f"run{seed}", config=_config("epochs=1", "steps_per_epoch=1", f"seed={seed}",
                                                          "songs_per_artist=10"))
        splits = load_splits(run / "split")
        ids = {tid for s in splits.values() for tid, _, _ in s.rows}
        assert "zz-copy" not in ids  # one recording, one place


def _torchrun(args: list[str]) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "musicrep",
           "train", *args]
    return torchrun(cmd, {**os.environ, "OMP_NUM_THREADS": "1", "MUSICREP_QUIET": "1"})


def test_a_two_process_run_resumed_as_two_processes_equals_the_uninterrupted_one(synth_store, tmp_path):
    settings = [f"--set={s}" for s in SETTINGS + ["threads=1", "steps_per_epoch=3"]]
    store = ["--store", str(synth_store.path)]
    err = _torchrun(store + ["-o", str(tmp_path / "whole"), *settings, "--set=epochs=3"])
    # one epoch line per epoch (from rank 0), with the loss averaged over the ranks
    lines = [ln for ln in err.splitlines() if "musicrep.training.train: epoch 1:" in ln]
    assert len(lines) == 1
    with open(tmp_path / "whole" / "metrics.csv", newline="") as fh:
        first = next(csv.DictReader(fh))
    assert f"train_loss {float(first['train_loss']):.4f}" in lines[0]
    _torchrun(store + ["-o", str(tmp_path / "split"), *settings, "--set=epochs=1"])
    _torchrun(store + ["-o", str(tmp_path / "split"), "--resume", "--set=epochs=3"])
    whole = read_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    resumed = read_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
