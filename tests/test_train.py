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

from musicrep.data.catalog import read_csv
from musicrep.training.checkpoint import load_encoder, read_checkpoint
from musicrep.config import load_config
from musicrep.errors import CheckpointError, ConfigError
from musicrep.training.loader import batch_stream
from musicrep.training.sampling import (
    ConceptSampler,
    SamplerSpec,
    make_batches,
)
from musicrep.data.splits import load_splits
from musicrep.data.prepare import prepare
from musicrep.data.store import FeatureStore
from musicrep.testing import synth_collection
from musicrep.training.settings import TrainConfig
from musicrep.training.train import train

SMALL = ["songs_per_artist=6", "songs_per_album=5", "negatives=4", "batch_size=16", "valid_batches=4",
         "tensorboard=false", "seed=0", "threads=1"]  # 1 thread: a shared 2-core box stalls 2 OpenMP threads


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    catalog = synth_collection(root / "audio", n_artists=6, albums_per_artist=2, songs_per_album=5,
                               seconds=8.0, sr=22050, seed=0)
    return prepare(read_csv(catalog), out_dir=root / "store", workers=2).path


def _config(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, path=None, overrides=SMALL + list(overrides))


def _metrics(run):
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("concept", ["artist", "album", "track"])
def test_each_concept_learns_well_above_chance(store, tmp_path, concept):
    run = train(store, out_dir=tmp_path / "run", config=_config(f"concept={concept}", "width=32", "epochs=3", "steps_per_epoch=15"))
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
    full = train(store, out_dir=tmp_path / "full", config=_config(*base, "epochs=3"))
    part = train(store, out_dir=tmp_path / "part", config=_config(*base, "epochs=1"))
    assert len(_metrics(part)) == 1
    # Resume in a worker process this time: the batches are the same whatever the loader.
    part = train(store, out_dir=tmp_path / "part", config=_config(*base, "epochs=3", "num_workers=1"), resume=True)
    a, b = read_checkpoint(full / "last.pt"), read_checkpoint(part / "last.pt")
    assert a["step"] == b["step"] == 12
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [r["valid_loss"] for r in _metrics(full)] == [r["valid_loss"] for r in _metrics(part)]
    with pytest.raises(ConfigError, match="width"):
        train(store, out_dir=tmp_path / "part", config=_config(*base, "epochs=4", "width=16"), resume=True)
    with pytest.raises(ConfigError, match="--resume"):
        train(store, out_dir=tmp_path / "part", config=_config(*base, "epochs=4"))


def test_damaged_checkpoints_are_refused(store, tmp_path):
    run = train(store, out_dir=tmp_path / "run", config=_config("concept=artist", "width=8", "epochs=1", "steps_per_epoch=2"))
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
    train(store, out_dir=tmp_path / "run", config=_config("concept=album", "width=8", "epochs=1", "steps_per_epoch=1"))
    split = load_splits(tmp_path / "run" / "split")["album"]
    sampler = ConceptSampler(store=fs, split=split, concept="album", mode="train", negatives=2)
    spec = SamplerSpec(store_path=str(store), split=split, concept="album", mode="train", negatives=2)
    stream = batch_stream(samplers={"album": sampler}, specs=[spec], batch_size=4, seed=7, start_step=3, num_workers=2)
    got = [next(stream)["album"].numpy() for _ in range(3)]
    stream.close()
    for k, b in enumerate(got):
        assert np.array_equal(b, make_batches({"album": sampler}, batch_size=4, seed=7, rank=0, step=3 + k)["album"])


def _torchrun(cmd: list[str], env: dict) -> str:
    """Run a torchrun command in its own session, assert it succeeded; its stderr.

    On a timeout, torchrun *and* its worker processes are killed, so a hung
    rendezvous never leaves orphans behind.
    """
    env = {**env, "PYTHONFAULTHANDLER": "1"}  # a rank that aborts prints its Python stacks
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-8000:]
    return stderr


def test_two_process_ddp_ends_with_identical_weights(store, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUSICREP_QUIET": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "musicrep", "-q", "train", "--store", str(store), "--concept", "artist", "--negatives", "2",
           "-o", str(run)] + [f"--set={s}" for s in SMALL[:2]] + [
           "--set=width=8", "--set=epochs=2", "--set=steps_per_epoch=3", "--set=batch_size=4",
           "--set=valid_batches=1", "--set=tensorboard=false"]
    _torchrun(cmd, env)
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and info["ddp_max_weight_diff"] == 0.0
    assert (run / "DONE").is_file() and read_checkpoint(run / "last.pt")["step"] == 6


def test_early_stopping_keeps_the_best_checkpoint(store, tmp_path, monkeypatch):
    import musicrep.training.train as train_module

    scripted = iter([0.9, 0.7, 0.8, 0.75, 0.1])  # improves at epoch 2, then not for 2 epochs

    def fake_validate(model, samplers, *, config, d):
        loss = next(scripted)
        return {"valid_loss": loss, "valid_acc": 1 - loss, "valid_loss_artist": loss, "valid_acc_artist": 1 - loss}

    monkeypatch.setattr(train_module, "validate", fake_validate)
    run = train(store, out_dir=tmp_path / "run", config=_config("concept=artist", "width=8", "epochs=5", "steps_per_epoch=1",
                                                 "batch_size=4", "patience=2"))
    assert [r["epoch"] for r in _metrics(run)] == ["1", "2", "3", "4"]  # stopped before epoch 5
    best, last = read_checkpoint(run / "best.pt"), read_checkpoint(run / "last.pt")
    assert (best["epoch"], best["best_metric"]) == (2, 0.7)
    assert last["epoch"] == 4 and last["bad_epochs"] == 2
    # Resuming a run that stopped early does not train further.
    train(store, out_dir=run, config=_config("concept=artist", "width=8", "epochs=5", "steps_per_epoch=1", "batch_size=4",
                              "patience=2"), resume=True)
    assert read_checkpoint(run / "last.pt")["step"] == 4


def test_stale_checkpoint_temps_are_removed_when_a_run_starts(store, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = run / ".last.pt.abc123.tmp"  # what a kill during a checkpoint write leaves
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    train(store, out_dir=run, config=_config("concept=artist", "width=8", "epochs=1", "steps_per_epoch=1", "batch_size=4"))
    assert not stale.exists()
    assert not list(run.glob(".*.tmp"))


_DDP_STEP = '''
import sys, torch, torch.distributed as dist
from musicrep.config import load_config
from musicrep.training.settings import TrainConfig
from musicrep.training.steps import _make_optimizer, make_encoder, train_step
dist.init_process_group("gloo")
torch.set_num_threads(1)
config = load_config(TrainConfig, path=None, overrides=sys.argv[3:])
torch.manual_seed(0)
model = make_encoder(config, n_mels=16)
net = torch.nn.parallel.DistributedDataParallel(model)
optimizer = _make_optimizer(model, config)
batches = torch.load(sys.argv[1], weights_only=True)  # this rank's half of the global batch
train_step(net, model=model, optimizer=optimizer, batches=batches, config=config, step=0, world=dist.get_world_size())
if dist.get_rank() == 0:
    torch.save({k: v.detach() for k, v in model.named_parameters()}, sys.argv[2])
dist.barrier()  # no rank tears gloo down while another still works (that aborts the process)
dist.destroy_process_group()
'''


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_two_process_ddp_takes_the_step_of_one_process_on_the_global_batch(tmp_path, reduction):
    from musicrep.training.steps import _make_optimizer, make_encoder, train_step

    settings = ["concept=joint", "width=8", "negatives=2", f"loss_reduction={reduction}", "lr=0.01", "l2_conv=0.01"]
    torch.manual_seed(5)
    half = {c: torch.randn(3, 4, 129, 16) + k for k, c in enumerate(("artist", "album", "track"))}
    torch.save(half, tmp_path / "half.pt")
    # Each rank gets the same half, so each slot's batch statistics on a rank equal
    # those of the global batch [half; half]; only the loss's reduction is then tested.
    script = tmp_path / "step.py"
    script.write_text(_DDP_STEP)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path / "half.pt"), str(tmp_path / "ddp.pt"), *settings]
    _torchrun(cmd, {**os.environ, "OMP_NUM_THREADS": "1"})
    config = load_config(TrainConfig, path=None, overrides=settings)
    torch.manual_seed(0)
    model = make_encoder(config, n_mels=16)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = _make_optimizer(model, config)
    train_step(model, model=model, optimizer=optimizer, batches={c: torch.cat([b, b]) for c, b in half.items()}, config=config, step=0)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for name, value in model.named_parameters():
        one, two = value.detach() - before[name], ddp[name] - before[name]
        if name.endswith(".1.bias"):  # a conv bias before BatchNorm gets no gradient: nothing to compare
            assert float(two.abs().max()) < 1e-5
            continue
        assert float(one.abs().max()) > 1e-4, name  # every other parameter takes a real step
        assert float((one - two).abs().max()) <= 1e-3 * float(one.abs().max()), name


def test_lr_decays_per_step_and_l2_pulls_the_kernels(store, tmp_path):
    from musicrep.training.steps import _make_optimizer, lr_at, make_encoder, train_step

    run = train(store, out_dir=tmp_path / "run", config=_config("concept=artist", "width=8", "epochs=2", "steps_per_epoch=3",
                                                 "batch_size=4", "lr_decay=0.1"))
    lrs = [float(r["lr"]) for r in _metrics(run)]
    # Keras time-based decay: the lr of the last step of each epoch, lr / (1 + decay * step)
    assert lrs == pytest.approx([0.1 / (1 + 0.1 * 2), 0.1 / (1 + 0.1 * 5)])
    assert lr_at(0, config=_config()) == 0.1 and lr_at(10**6, config=_config()) == pytest.approx(0.05)  # the authors' 1e-6
    # The L2 term adds exactly lr * 2 * l2 * w to each kernel's step (plain SGD, one step).
    batches = {"artist": torch.randn(4, 6, 129, 128)}
    steps = {}
    for l2 in (0.0, 0.5):
        config = _config("concept=artist", "width=8", "momentum=0", "lr_decay=0", f"l2_conv={l2}")
        torch.manual_seed(0)
        model = make_encoder(config, n_mels=128)
        w0 = model.features[0][1].weight.detach().clone()
        train_step(model, model=model, optimizer=_make_optimizer(model, config), batches=batches, config=config, step=0)
        steps[l2] = w0 - model.features[0][1].weight.detach()
    assert torch.allclose(steps[0.5] - steps[0.0], 0.1 * 2 * 0.5 * w0, atol=1e-6)


@pytest.mark.parametrize("loss", ["hinge", "infonce"])
def test_in_batch_negatives_learn_well_above_chance(store, tmp_path, loss):
    run = train(store, out_dir=tmp_path / "run", config=_config("concept=artist", "width=32", "epochs=3", "steps_per_epoch=15",
                                                 "negatives=0", "in_batch_negatives=true", f"loss={loss}"))
    rows = _metrics(run)
    # validation uses the same candidates: of 15 other rows about 12.5 are of another artist (6 artists),
    # so chance is about 1 / 13.5 = 0.074
    assert max(float(r["valid_acc_artist"]) for r in rows) >= 0.16, rows
    assert max(float(r["train_acc_artist"]) for r in rows) >= 0.5, rows
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]) or len(rows) == 1


def test_batch_labels_are_the_anchors_labels_of_the_batch(store, tmp_path):
    from musicrep.training.sampling import batch_labels, batch_rng

    train(store, out_dir=tmp_path / "run", config=_config("concept=artist", "width=8", "epochs=1", "steps_per_epoch=1"))
    split = load_splits(tmp_path / "run" / "split")["artist"]
    sampler = ConceptSampler(store=FeatureStore(store), split=split, concept="artist", mode="train", negatives=2)
    got = batch_labels({"artist": sampler}, batch_size=6, seed=4, rank=1, step=9)["artist"]
    batch = sampler.sample(batch_size=6, rng=batch_rng(seed=4, rank=1, concept="artist", mode="train", step=9))
    assert np.array_equal(got, sampler.anchor_labels(batch.tracks))
    # a positive is a song of the anchor's artist: its label is the anchor's
    assert np.array_equal(got, sampler.anchor_labels(batch.tracks[:, 1:]))
    assert len(set(got.tolist())) > 1


def test_negatives_zero_needs_in_batch_negatives():
    with pytest.raises(ConfigError, match="in_batch_negatives"):
        _config("negatives=0")
