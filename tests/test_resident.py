"""Frames resident on the device give exactly the loader's batches (checked on CPU tensors)."""

from __future__ import annotations

import numpy as np
import torch

from musicrep.training.checkpoint import read_checkpoint
from musicrep.config import load_config
from musicrep.training.resident import ResidentFrames, fits, resident_stream
from musicrep.training.sampling import ConceptSampler, make_batches
from musicrep.training.settings import TrainConfig
from musicrep.training.train import make_run_splits, train

SETTINGS = ["concept=joint", "width=8", "negatives=1", "batch_size=4", "steps_per_epoch=3", "epochs=2",
            "valid_batches=1", "songs_per_artist=10", "songs_per_album=5", "tensorboard=false", "threads=1", "seed=5"]


def test_resident_batches_equal_the_loaders(synth_store):
    config = load_config(TrainConfig, path=None, overrides=SETTINGS)
    splits = make_run_splits(catalog=synth_store.catalog, config=config)
    samplers = {c: ConceptSampler(store=synth_store, split=splits["album" if c == "album" else "artist"], concept=c,
                                  mode="train", negatives=2) for c in ("artist", "album", "track")}
    ids = [t for s in samplers.values() for t in s.track_ids]
    frames = ResidentFrames(store=synth_store, track_ids=ids, device=torch.device("cpu"))
    assert frames.frames.dtype == torch.float16 and len(frames.track_ids) == len(set(ids))
    stream = resident_stream(samplers=samplers, frames=frames, batch_size=5, seed=9, rank=1, start_step=7)
    for step in range(7, 10):
        got = next(stream)
        want = make_batches(samplers, batch_size=5, seed=9, rank=1, step=step)
        for c in samplers:
            assert got[c].dtype == torch.float32 and np.array_equal(got[c].numpy(), want[c])
    assert not fits(store=synth_store, track_ids=ids, device=torch.device("cpu"))  # auto: GPUs only


def test_a_run_with_resident_frames_ends_with_the_same_weights(synth_store, tmp_path):
    runs = [train(synth_store.path, out_dir=tmp_path / mode, config=load_config(TrainConfig, path=None, overrides=SETTINGS + [f"resident_frames={mode}"]))
            for mode in ("always", "never")]
    on, off = (read_checkpoint(r / "last.pt")["model"] for r in runs)
    assert all(torch.equal(on[k], off[k]) for k in on)
