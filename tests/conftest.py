"""Shared fixtures: a seeded rng and tiny audio files built in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("MUSICREP_QUIET", "1")  # no progress bars in test logs


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20190627)


def write_tone(path: Path, *, freq: float = 440.0, seconds: float = 4.0, sr: int = 22050, channels: int = 1, amp: float = 0.5, subtype=None) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    y = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels > 1:
        y = np.stack([y] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, subtype=subtype)
    return path


@pytest.fixture
def tone_file(tmp_path):
    """Factory: ``tone_file(name, freq=..., seconds=..., sr=..., channels=...)`` -> path."""

    def make(name: str = "tone.wav", **kwargs) -> Path:
        return write_tone(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def synth_store(tmp_path_factory):
    """A prepared store of a small synthetic collection (6 artists x 2 albums x 5 songs, 8 s)."""
    from musicrep.data.catalog import read_csv
    from musicrep.data.prepare import prepare
    from musicrep.data.store import FeatureStore
    from musicrep.testing import synth_collection

    root = tmp_path_factory.mktemp("synth")
    catalog = synth_collection(root / "audio", n_artists=6, albums_per_artist=2, songs_per_album=5, seconds=8.0)
    prepare(read_csv(catalog), out_dir=root / "store", workers=2)
    return FeatureStore(root / "store")


@pytest.fixture(autouse=True)
def _one_thread():
    """One BLAS/OpenMP/torch thread per test: the suite runs on 2 cores, often next
    to subprocess tests, where nested threads mostly wait on each other (measured:
    t-SNE and training tests 3 s -> 25 s with default threads on a busy machine)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)
