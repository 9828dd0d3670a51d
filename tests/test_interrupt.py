"""SIGKILL ``musicrep train`` and ``musicrep embed`` at a random point, rerun, and get the uninterrupted result.

(prepare's kill-and-resume test is tests/test_store.py::test_resume_after_sigkill_equals_uninterrupted.)
A kill can leave an atomic write's temp file behind (``.NAME.XXXX[.suffix].tmp``);
these tests check that no such file is ever read as a finished one.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musicrep.training.checkpoint import read_checkpoint, save_checkpoint
from musicrep.cli import main
from musicrep.config import FeatureConfig, load_config, to_dict
from musicrep.training.model import Encoder
from musicrep.training.settings import TrainConfig
from musicrep.training.train import train

ENV = {**os.environ, "MUSICREP_QUIET": "1", "OMP_NUM_THREADS": "1"}
TRAIN_SETTINGS = ["concept=artist", "width=8", "negatives=2", "batch_size=4", "steps_per_epoch=12", "epochs=6",
                  "valid_batches=1", "songs_per_artist=10", "tensorboard=false", "threads=1", "seed=3"]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "musicrep", "-q", *args], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after(proc: subprocess.Popen, ready, delay: float, timeout: float = 120.0) -> bool:
    """SIGKILL the process group ``delay`` s after ``ready()`` holds; False if the process ended first."""
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() > end:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("the process never reached the point to kill it at")
        time.sleep(0.01)
    time.sleep(delay)
    finished = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return not finished


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_sigkill_train_then_resume_equals_uninterrupted(synth_store, tmp_path):
    store = str(synth_store.path)
    reference = train(store, out_dir=tmp_path / "ref", config=load_config(TrainConfig, path=None, overrides=TRAIN_SETTINGS))
    run = tmp_path / "killed"
    args = ["train", "--store", store, "-o", str(run), *[f"--set={s}" for s in TRAIN_SETTINGS]]
    rng = np.random.default_rng(11)
    # kill twice, each time at a random moment after a random epoch's checkpoint, then finish;
    # at least two epochs remain after each kill point, so the run cannot end before the kill
    for attempt, epochs in enumerate(([1, 2], [3, 4])):
        proc = _start(args + (["--resume"] if attempt else []))
        target = int(rng.choice(epochs))
        reached = lambda target=target: (run / "last.pt").is_file() and read_checkpoint(run / "last.pt")["epoch"] >= target
        assert _kill_after(proc, reached, delay=float(rng.uniform(0.0, 0.05))), proc.stderr.read().decode()
        assert not (run / "DONE").exists()
        ckpt = read_checkpoint(run / "last.pt")  # whole and digest-checked: never a half-written file
        assert target <= ckpt["epoch"] < 6
    done = subprocess.run([sys.executable, "-m", "musicrep", "-q", *args, "--resume"], env=ENV, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "DONE").is_file()
    a, b = read_checkpoint(reference / "last.pt"), read_checkpoint(run / "last.pt")
    assert a["step"] == b["step"] == 72 and a["epoch"] == b["epoch"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["best_metric"] == b["best_metric"]
    best_a, best_b = read_checkpoint(reference / "best.pt"), read_checkpoint(run / "best.pt")
    assert best_a["epoch"] == best_b["epoch"]
    for key, value in best_a["model"].items():
        assert torch.equal(value, best_b["model"][key]), key
    ref_rows = (reference / "metrics.csv").read_text().splitlines()
    got_rows = (run / "metrics.csv").read_text().splitlines()

    def strip(rows):  # drop the timing columns
        return [r.rsplit(",", 2)[0] for r in rows]

    assert strip(got_rows) == strip(ref_rows)
    # temp files a kill may leave are hidden *.tmp names, never the checkpoint names read back
    assert all(p.name.startswith(".") for p in _temp_files(run)), _temp_files(run)


def _write_songs(folder: Path, n: int) -> list[Path]:
    sr = 22050
    t = np.arange(int(3.5 * sr)) / sr
    paths = []
    for i in range(n):
        sub = folder / f"disc {i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        y = 0.3 * np.sin(2 * np.pi * (150 + 37 * i) * t) + 0.1 * np.sin(2 * np.pi * (900 + 11 * i) * t)
        paths.append(sub / f"{i:02d} song.wav")
        sf.write(paths[-1], y.astype(np.float32), sr)
    return paths


def _npz_tree(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for p in sorted(folder.rglob("*.npz")):
        with np.load(p, allow_pickle=False) as z:
            out[str(p.relative_to(folder))] = {k: z[k] for k in z.files}
    return out


def _assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if key in ("vector", "segments"):
            # a file embedded in another mix of files per batch may differ in the last float bit, nothing more
            np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.slow
def test_sigkill_embed_then_rerun_equals_uninterrupted(tmp_path):
    torch.manual_seed(0)
    enc = Encoder(width=8)
    enc.set_normalization(1.0, 0.5)
    save_checkpoint({"model": enc.state_dict(), "model_config": dataclasses.asdict(enc.model_config),
                     "feature_config": to_dict(FeatureConfig()), "step": 0, "epoch": 0, "best_metric": 0.0,
                     "config": {}, "concept": "artist"}, path=tmp_path / "run" / "best.pt")
    music = tmp_path / "music"
    songs = _write_songs(music, 80)
    common = ["--run", str(tmp_path / "run"), "--workers", "1", "--batch-size", "8", "--segments"]
    assert main(["-q", "embed", str(music), "-o", str(tmp_path / "ref"), *common]) == 0
    reference = _npz_tree(tmp_path / "ref")
    assert len(reference) == len(songs)

    out = tmp_path / "out"
    proc = _start(["embed", str(music), "-o", str(out), *common])
    rng = np.random.default_rng(5)
    n_done = int(rng.integers(1, 30))
    some = lambda: out.is_dir() and len(list(out.rglob("*.npz"))) >= n_done
    assert _kill_after(proc, some, delay=float(rng.uniform(0.0, 0.02))), proc.stderr.read().decode()
    finished = _npz_tree(out)  # every .npz present after the kill is whole: np.load reads each one
    assert 0 < len(finished) < len(songs)
    for name, arrays in finished.items():
        _assert_same(arrays, reference[name])
    assert all(p.name.startswith(".") for p in _temp_files(out))  # a cut-off write is a hidden temp file
    # the kill may or may not have cut a write short; plant such a leftover for one unfinished file
    todo = next(p for p in songs if str(p.relative_to(music)) + ".npz" not in finished)
    stale = out / todo.parent.name / f".{todo.name}.npz.k1ll3d.npz.tmp"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"PK\x03\x04 cut short")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    assert main(["-q", "embed", str(music), "-o", str(out), *common]) == 0
    resumed = _npz_tree(out)
    assert resumed.keys() == reference.keys()
    for name in reference:
        _assert_same(resumed[name], reference[name])
    assert not _temp_files(out)
