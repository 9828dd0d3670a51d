"""No silent wrong results from ``prepare`` and the store it writes.

Each test reproduces one way a store could end up wrong while every command
exits 0: two writers, a resume that stores another file's frames, a truncated
FLAC thrown away, errors.csv rows doubled by a resume, a header that is
trusted, duplicate audio under two ids, a full disk, and workers that outlive
a killed ``prepare``. Kills are real SIGKILLs of real processes.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data.catalog import Catalog, Track, read_csv
from musicrep.cli import main
from musicrep.errors import FolderLockedError, StoreError
from musicrep.data.features import n_frames_for
from musicrep.data.prepare import prepare
from musicrep.data.store import FeatureStore, from_arrays, load_errors

SR = 22050
ENV = {**os.environ, "MUSICREP_QUIET": "1", "OMP_NUM_THREADS": "1"}
HAS_FFMPEG = shutil.which("ffmpeg") is not None

# prepare in a process of its own whose decoder waits: it touches STARTED/<pid>
# and waits until the file RELEASE exists (60 s at most), so the test knows the
# store is being written and what by. argv: catalog store started release workers
HELD_PREPARE = """
import os, sys, time, pathlib
import musicrep.data.prepare_workers as store
from musicrep.data.catalog import read_csv
from musicrep.data.prepare import prepare
catalog, out, started, release, workers = sys.argv[1:]
store._start_method = lambda: "fork"  # workers inherit the waiting decoder
real = store.compute_track
def held(path, config, **kwargs):
    pathlib.Path(started, str(os.getpid())).touch()
    end = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.02)
    return real(path, config=config, **kwargs)
store.compute_track = held
prepare(read_csv(catalog), out_dir=out, workers=int(workers))
"""

# prepare in a process of its own that SIGKILLs itself at a chosen point:
# "append" as the parts are about to be appended, "done" just before DONE.
KILLED_PREPARE = """
import os, signal, sys
import musicrep.data.prepare as store
from musicrep.data.catalog import read_csv
catalog, out, where = sys.argv[1:]
def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "append":
    store._append = kill
else:
    real = store.atomic_write_text
    store.atomic_write_text = lambda path, text: kill() if os.path.basename(path) == "DONE" else real(path, text=text)
store.prepare(read_csv(catalog), out_dir=out, workers=0)
"""


def tone(path: Path, freq: float, *, seconds: float = 3.5, sr: int = SR, channels: int = 1, subtype=None) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.2 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([y] * channels, axis=1) if channels > 1 else y, sr, subtype=subtype)
    return path


def write_catalog(path: Path, tracks: list[Track]) -> Path:
    return Catalog(tracks).write_csv(path)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"prepare ended (rc {proc.returncode}) before {what}: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill_prepare_at(where: str, catalog: Path, out: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_PREPARE, str(catalog), str(out), where], env=ENV,
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def same_frames(a: FeatureStore, b: FeatureStore) -> bool:
    return a.track_ids == b.track_ids and all(np.array_equal(a.frames(t), b.frames(t)) for t in a.track_ids)


# ------------------------------------------------------------------ 1. one writer per store


def test_second_prepare_into_one_store_fails_at_once_naming_the_holder(tmp_path, capsys):
    cat = write_catalog(tmp_path / "cat.csv", [Track(f"t{i}", str(tone(tmp_path / f"{i}.wav", 300 + 100 * i)))
                                                for i in range(3)])
    store, started, release = tmp_path / "store", tmp_path / "started", tmp_path / "release"
    started.mkdir()
    first = subprocess.Popen([sys.executable, "-c", HELD_PREPARE, str(cat), str(store), str(started), str(release), "0"],
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(lambda: any(started.iterdir()), first, "the first prepare started decoding")
        assert main(["-q", "prepare", str(cat), "-o", str(store), "--workers", "0"]) == 2
        err = capsys.readouterr().err
        assert f"is being written by PID {first.pid}" in err, err
        with pytest.raises(FolderLockedError, match=f"PID {first.pid}"):
            prepare(read_csv(cat), out_dir=store, workers=0, overwrite=True)  # never deletes a store being written
        assert first.poll() is None  # refused at once, not after waiting for the first one
        release.touch()
        assert first.wait(timeout=60) == 0, first.stderr.read().decode()[-2000:]
    finally:
        release.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
    result = FeatureStore(store)
    assert len(result) == 3 and (store / "DONE").is_file() and not (store / "parts").exists()
    assert load_errors(store) == []


# ------------------------------------------------------------------ 2. parts keyed by file


def test_resume_recomputes_a_part_whose_file_changed(tmp_path):
    a, b, c = tone(tmp_path / "a.wav", 440), tone(tmp_path / "b.wav", 660), tone(tmp_path / "c.wav", 880)
    store = tmp_path / "store"
    kill_prepare_at("append", write_catalog(tmp_path / "cat.csv", [Track("t1", str(a)), Track("t2", str(b))]), store)
    assert len(list((store / "parts").glob("*.npy"))) == 2  # both parts were finished before the kill
    # between the kill and the resume: t1 now names another file, t2's file is rewritten in place
    tone(b, 990)
    os.utime(b, ns=(time.time_ns() + 10**10,) * 2)
    changed = [Track("t1", str(c)), Track("t2", str(b))]
    prepare(Catalog(changed), out_dir=store, workers=0)
    fresh = prepare(Catalog(changed), out_dir=tmp_path / "fresh", workers=0)
    assert same_frames(FeatureStore(store), FeatureStore(fresh.path))


# ------------------------------------------------------------------ 3. truncated FLAC


@pytest.mark.skipif(not HAS_FFMPEG, reason="the readable rest of a truncated FLAC is decoded by ffmpeg")
def test_truncated_flac_keeps_its_readable_part_with_a_warning(tmp_path, capsys):
    whole = tone(tmp_path / "whole.flac", 440, seconds=12.0, sr=44100, channels=2)
    cut = tmp_path / "cut.flac"
    blob = whole.read_bytes()
    cut.write_bytes(blob[: int(len(blob) * 0.999)])  # 0.1% off the end: libsndfile "loses sync"
    cat = write_catalog(tmp_path / "cat.csv", [Track("cut", str(cut)), Track("whole", str(whole))])
    assert main(["-q", "prepare", str(cat), "-o", str(tmp_path / "store"), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "2 tracks stored (2 new), 0 unusable" in printed and "stored " + str(cut) in printed
    store = FeatureStore(tmp_path / "store")
    n = store.n_frames("cut")
    assert n_frames_for(int(11.95 * SR)) <= n <= store.n_frames("whole")  # libsndfile alone: 11.89 s
    # what was read is the file's own audio: equal to the whole file's frames but the last few
    np.testing.assert_array_equal(store.frames("cut")[: n - 4], store.frames("whole")[: n - 4])
    (row,) = load_errors(store.path)
    assert (row["track_id"], row["reason"]) == ("cut", "damaged audio, readable part kept")
    assert re.match(r"kept 11\.9\d s of 12\.00 s", row["detail"]), row
    again = prepare(read_csv(cat), out_dir=store.path, workers=0)  # up to date: still a warning, not unusable
    assert (again.new, again.errors, [w["track_id"] for w in again.warnings]) == (0, [], ["cut"])


# ------------------------------------------------------------------ 4. errors.csv across resumes


def test_sigkill_just_before_done_does_not_double_the_errors(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio\n" * 20)
    cat = write_catalog(tmp_path / "cat.csv", [Track("a", str(tone(tmp_path / "a.wav", 440))), Track("bad", str(bad)),
                                               Track("b", str(tone(tmp_path / "b.wav", 660)))])
    store = tmp_path / "store"
    kill_prepare_at("done", cat, store)
    assert not (store / "DONE").exists() and len(load_errors(store)) == 1
    assert main(["-q", "prepare", str(cat), "-o", str(store), "--workers", "0"]) == 0
    assert "2 tracks stored (0 new), 1 unusable" in capsys.readouterr().out
    assert [e["track_id"] for e in load_errors(store)] == ["bad"]
    again = prepare(read_csv(cat), out_dir=store, workers=0, retry_errors=True)
    assert [e["track_id"] for e in again.errors] == ["bad"] and [e["track_id"] for e in load_errors(store)] == ["bad"]


# ------------------------------------------------------------------ 5. store headers are checked


@pytest.fixture
def small_store(tmp_path, rng):
    frames = [rng.standard_normal((108, 128)).astype(np.float32) for _ in range(2)]
    return from_arrays(tmp_path / "store", tracks=[Track("t0", "/x/0.wav"), Track("t1", "/x/1.wav")], frames=frames).path


def _edit_json(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            meta[outer][inner] = value
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


def _edit_row(path: Path, track_id: str, **changes) -> None:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        if r["track_id"] == track_id:
            r.update({k: str(v) for k, v in changes.items()})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("damage, field", [
    # the trial's case: the frames would be read as [216, 64] and every size check passes
    ({"feature_config.n_mels": 64, "n_mels": 64, "total_frames": 432}, "feature_hash"),
    ({"feature_config.hop_length": 256}, "feature_hash"),
    ({"n_mels": 64}, "n_mels"),
    ({"dtype": "float32"}, "dtype"),
    ({"total_frames": True}, "total_frames"),
    ({"total_frames": 216.0}, "total_frames"),
    ({"feature_config.n_fft": -1024}, "feature_config.n_fft"),
])
def test_edited_store_header_is_a_named_error(small_store, damage, field):
    FeatureStore(small_store)
    _edit_json(small_store / "store.json", **damage)
    with pytest.raises(StoreError) as info:
        FeatureStore(small_store)
    assert str(small_store) in str(info.value) and field in str(info.value)


@pytest.mark.parametrize("row", [
    {"offset": 2**62, "n_frames": 2**62},  # the int64 sum wraps to a negative number
    {"offset": 2**63 + 5},
    {"n_frames": -1},
    {"offset": "1_0"},
])
def test_index_rows_are_checked_with_exact_integers(small_store, row):
    _edit_row(small_store / "index.csv", "t1", **row)
    with pytest.raises(StoreError) as info:
        FeatureStore(small_store)
    assert f"{small_store / 'index.csv'}:3" in str(info.value) and next(iter(row)) in str(info.value)


# ------------------------------------------------------------------ 6b. duplicate audio


def test_duplicate_audio_is_grouped_and_older_stores_still_open(tmp_path):
    from musicrep.data.store import duplicate_groups

    a = tone(tmp_path / "a.wav", 440, subtype="PCM_16")
    sf.write(tmp_path / "a.flac", sf.read(a, dtype="int16")[0], SR, subtype="PCM_16")  # same samples, other container
    b = tone(tmp_path / "b.wav", 660, subtype="PCM_16")
    tracks = [Track("x", str(a)), Track("y", str(b)), Track("z", str(tmp_path / "a.flac")), Track("w", str(a))]
    result = prepare(Catalog(tracks), out_dir=tmp_path / "store", workers=0)
    assert duplicate_groups(FeatureStore(result.path)) == [["w", "x", "z"]]
    assert duplicate_groups(result.path) == [["w", "x", "z"]]  # a folder works too
    store = FeatureStore(result.path)
    assert store.content_hash("x") == store.content_hash("z") != store.content_hash("y")
    assert "content_hash" not in store.catalog.by_id("x").extra
    # a store prepared before the column existed opens and knows of no duplicates
    index = result.path / "index.csv"
    with open(index, newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(index, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[c for c in rows[0] if c != "content_hash"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    assert duplicate_groups(result.path) == [] and len(FeatureStore(result.path)) == 4


# ------------------------------------------------------------------ 7a. disk full


def test_disk_full_is_a_store_error_and_a_rerun_resumes(tmp_path, monkeypatch):
    import musicrep.data.store_files as store_module

    tracks = Catalog([Track(f"t{i}", str(tone(tmp_path / f"{i}.wav", 300 + 200 * i))) for i in range(2)])
    out = tmp_path / "store"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(np, "save", full)  # the worker's write of a part
        with pytest.raises(StoreError) as info:
            prepare(tracks, out_dir=out, workers=0)
    message = str(info.value)
    assert str(out) in message and "full" in message and "rerun" in message and "resumes" in message
    real = store_module.atomic_write_csv

    def quota_on_index(path, **kwargs):
        if Path(path).name == "index.csv":
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(path))
        return real(path, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(store_module, "atomic_write_csv", quota_on_index)
        with pytest.raises(StoreError, match=re.escape(str(out)) + ".*index.csv.*rerun"):
            prepare(tracks, out_dir=out, workers=0)
    assert load_errors(out) == []  # no track was blamed for the full disk
    result = prepare(tracks, out_dir=out, workers=0)
    assert (result.stored, result.errors) == (2, [])


# ------------------------------------------------------------------ 7b. workers die with prepare


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")
def test_workers_exit_when_prepare_is_killed(tmp_path):
    cat = write_catalog(tmp_path / "cat.csv", [Track(f"t{i}", str(tone(tmp_path / f"{i}.wav", 300 + 100 * i)))
                                                for i in range(4)])
    started = tmp_path / "started"
    started.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HELD_PREPARE, str(cat), str(tmp_path / "store"), str(started),
                             str(tmp_path / "never"), "2"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    workers: list[int] = []
    try:
        wait_for(lambda: len(list(started.iterdir())) == 2, proc, "both workers started decoding")
        workers = [int(p.name) for p in started.iterdir()]
        assert proc.pid not in workers
        proc.kill()  # SIGKILL the main process only, as `kill -9 PID` does
        proc.wait()
        end = time.monotonic() + 5.0
        while any(_alive(pid) for pid in workers) and time.monotonic() < end:
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)], "worker processes outlived the killed prepare"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:  # only the workers this test started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
