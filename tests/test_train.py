"""Training end to end on a small synthetic collection whose artists and albums differ audibly."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from musicrep.catalog import read_csv
from musicrep.checkpoint import load_encoder, read_checkpoint
from musicrep.config import load_config
from musicrep.errors import CheckpointError, ConfigError
from musicrep.sampling import ConceptSampler, SamplerSpec, batch_stream, make_batches
from musicrep.splits import load_splits
from musicrep.store import FeatureStore, prepare
from musicrep.testing import synth_collection
from musicrep.train import TrainConfig, train

SMALL = ["songs_per_artist=10", "songs_per_album=5", "negatives=4", "batch_size=16", "valid_batches=4",
         "tensorboard=false", "seed=0", "threads=1"]  # 1 thread: a shared 2-core box stalls 2 OpenMP threads


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    catalog = synth_collection(root / "audio", n_artists=6, albums_per_artist=2, songs_per_album=5,
                               seconds=8.0, sr=22050, seed=0)
    return prepare(read_csv(catalog), root / "store", workers=2).path


def _config(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, None, SMALL + list(overrides))


def _metrics(run):
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("concept", ["artist", "album", "track"])
def test_each_concept_learns_well_above_chance(store, tmp_path, concept):
    run = train(store, tmp_path / "run", _config(f"concept={concept}", "width=32", "epochs=3", "steps_per_epoch=15"))
    rows = _metrics(run)
    best = max(float(r[f"valid_acc_{concept}"]) for r in rows)
    assert best >= 0.5, rows  # chance with 4 negatives is 0.2
    assert (run / "DONE").is_file() and (run / "split" / ("album.csv" if concept == "album" else "artist.csv")).is_file()
    encoder, info = load_encoder(run)
    assert not encoder.training and info.concept == concept and encoder.width == 32
    # The training split's statistics travel with the weights.
    assert float(encoder.std) != 1.0 and float(encoder.mean) != 0.0


def test_resume_reproduces_the_uninterrupted_run(store, tmp_path):
    base = ["concept=joint", "width=8", "steps_per_epoch=4", "batch_size=8", "valid_batches=2"]
    full = train(store, tmp_path / "full", _config(*base, "epochs=3"))
    part = train(store, tmp_path / "part", _config(*base, "epochs=1"))
    assert len(_metrics(part)) == 1
    # Resume in a worker process this time: the batches are the same whatever the loader.
    part = train(store, tmp_path / "part", _config(*base, "epochs=3", "num_workers=1"), resume=True)
    a, b = read_checkpoint(full / "last.pt"), read_checkpoint(part / "last.pt")
    assert a["step"] == b["step"] == 12
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [r["valid_loss"] for r in _metrics(full)] == [r["valid_loss"] for r in _metrics(part)]
    with pytest.raises(ConfigError, match="width"):
        train(store, tmp_path / "part", _config(*base, "epochs=4", "width=16"), resume=True)
    with pytest.raises(ConfigError, match="--resume"):
        train(store, tmp_path / "part", _config(*base, "epochs=4"))


def test_damaged_checkpoints_are_refused(store, tmp_path):
    run = train(store, tmp_path / "run", _config("concept=artist", "width=8", "epochs=1", "steps_per_epoch=2"))
    blob = (run / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError):
        load_encoder(tmp_path / "cut.pt")
    payload = torch.load(run / "best.pt", weights_only=True)
    payload["model"]["features.0.1.weight"][0, 0, 0] += 1.0  # tampered weights, stale digest
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="digest"):
        load_encoder(tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError):
        load_encoder(tmp_path / "nowhere")


def test_worker_processes_give_the_same_batches(store, tmp_path):
    fs = FeatureStore(store)
    train(store, tmp_path / "run", _config("concept=album", "width=8", "epochs=1", "steps_per_epoch=1"))
    split = load_splits(tmp_path / "run" / "split")["album"]
    sampler = ConceptSampler(store=fs, split=split, concept="album", mode="train", negatives=2)
    spec = SamplerSpec(store_path=str(store), split=split, concept="album", mode="train", negatives=2)
    stream = batch_stream(samplers={"album": sampler}, specs=[spec], batch_size=4, seed=7, start_step=3, num_workers=2)
    got = [next(stream)["album"].numpy() for _ in range(3)]
    stream.close()
    for k, b in enumerate(got):
        assert np.array_equal(b, make_batches({"album": sampler}, batch_size=4, seed=7, rank=0, step=3 + k)["album"])


def test_two_process_ddp_ends_with_identical_weights(store, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUSICREP_QUIET": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "musicrep", "-q", "train", "--store", str(store), "--concept", "artist", "--negatives", "2",
           "-o", str(run)] + [f"--set={s}" for s in SMALL[:2]] + [
           "--set=width=8", "--set=epochs=2", "--set=steps_per_epoch=3", "--set=batch_size=4",
           "--set=valid_batches=1", "--set=tensorboard=false"]
    # Own session: on a timeout, kill torchrun *and* its worker processes, so a
    # hung rendezvous never leaves orphans behind.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and info["ddp_max_weight_diff"] == 0.0
    assert (run / "DONE").is_file() and read_checkpoint(run / "last.pt")["step"] == 6


def test_early_stopping_keeps_the_best_checkpoint(store, tmp_path, monkeypatch):
    import musicrep.train as train_module

    scripted = iter([0.9, 0.7, 0.8, 0.75, 0.1])  # improves at epoch 2, then not for 2 epochs

    def fake_validate(model, samplers, *, config, d):
        loss = next(scripted)
        return {"valid_loss": loss, "valid_acc": 1 - loss, "valid_loss_artist": loss, "valid_acc_artist": 1 - loss}

    monkeypatch.setattr(train_module, "validate", fake_validate)
    run = train(store, tmp_path / "run", _config("concept=artist", "width=8", "epochs=5", "steps_per_epoch=1",
                                                 "batch_size=4", "patience=2"))
    assert [r["epoch"] for r in _metrics(run)] == ["1", "2", "3", "4"]  # stopped before epoch 5
    best, last = read_checkpoint(run / "best.pt"), read_checkpoint(run / "last.pt")
    assert (best["epoch"], best["best_metric"]) == (2, 0.7)
    assert last["epoch"] == 4 and last["bad_epochs"] == 2
    # Resuming a run that stopped early does not train further.
    train(store, run, _config("concept=artist", "width=8", "epochs=5", "steps_per_epoch=1", "batch_size=4",
                              "patience=2"), resume=True)
    assert read_checkpoint(run / "last.pt")["step"] == 4


def test_stale_checkpoint_temps_are_removed_when_a_run_starts(store, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = run / ".last.pt.abc123.tmp"  # what a kill during a checkpoint write leaves
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    train(store, run, _config("concept=artist", "width=8", "epochs=1", "steps_per_epoch=1", "batch_size=4"))
    assert not stale.exists()
    assert not list(run.glob(".*.tmp"))
