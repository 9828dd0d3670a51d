import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from musicrep.data.catalog import Catalog, Track, read_csv
from musicrep.config import FeatureConfig
from musicrep.errors import StoreError
from musicrep.data.features import log_mel
from musicrep.data.audio import load_audio
from musicrep.data.prepare import prepare
from musicrep.data.store import FeatureStore, load_errors
from musicrep.testing import synth_collection


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("coll")
    return read_csv(synth_collection(root, n_artists=3, albums_per_artist=2, songs_per_album=2, seconds=5.0))


def test_round_trip(collection, tmp_path):
    result = prepare(collection, out_dir=tmp_path / "s", workers=2)
    assert result.stored == len(collection) == 12 and not result.errors
    store = FeatureStore(tmp_path / "s")
    assert store.track_ids == collection.track_ids
    t = collection[3]
    expected = log_mel(load_audio(t.path))
    frames = store.frames(t.track_id)
    assert frames.shape == expected.shape == (1 + 5 * 22050 // 512, 128)
    assert frames.dtype == np.float32
    # float16 storage: relative error below 2^-10
    np.testing.assert_allclose(frames, expected, rtol=2**-10, atol=1e-3)
    assert store.catalog.by_id(t.track_id).artist == t.artist
    assert store.feature_config == FeatureConfig()


def test_crop_and_stats(collection, tmp_path):
    prepare(collection, out_dir=tmp_path / "s", workers=1)
    store = FeatureStore(tmp_path / "s")
    tid = store.track_ids[0]
    full = store.frames(tid)
    np.testing.assert_array_equal(store.crop(tid, start=5), full[5:134])
    rng = np.random.default_rng(0)
    crops = [store.crop(tid, rng=rng) for _ in range(20)]
    assert all(c.shape == (129, 128) for c in crops)
    assert any(not np.array_equal(crops[0], c) for c in crops[1:])
    with pytest.raises(StoreError, match="outside"):
        store.crop(tid, start=full.shape[0] - 10)
    with pytest.raises(StoreError, match="no track"):
        store.frames("nope")
    mean, std = store.stats(store.track_ids[:2])
    both = np.concatenate([store.frames(i) for i in store.track_ids[:2]])
    assert mean == pytest.approx(both.mean(), rel=1e-5)
    assert std == pytest.approx(both.std(), rel=1e-5)


def test_bad_files_are_reported_and_skipped(collection, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_text("not audio")
    short = tmp_path / "short.wav"
    import soundfile as sf

    sf.write(short, 0.5 * np.ones(22050, np.float32), 22050)
    cat = Catalog(list(collection)[:2] + [Track("bad", str(bad)), Track("short", str(short)), Track("gone", str(tmp_path / "gone.wav"))])
    result = prepare(cat, out_dir=tmp_path / "s", workers=2)
    assert result.stored == 2
    reasons = {e["track_id"]: e["reason"] for e in load_errors(tmp_path / "s")}
    assert reasons == {"bad": "cannot decode audio", "short": "audio is shorter than one segment", "gone": "cannot decode audio"}
    # a rerun does not retry known-bad files and changes nothing
    again = prepare(cat, out_dir=tmp_path / "s", workers=2)
    assert again.new == 0 and again.skipped_existing == 2


def test_nothing_usable_is_an_error(tmp_path):
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"")
    with pytest.raises(StoreError, match="none of the 1 tracks"):
        prepare(Catalog([Track("x", str(bad))]), out_dir=tmp_path / "s")


def test_append_and_settings_guard(collection, tmp_path):
    prepare(collection[:4], out_dir=tmp_path / "s", workers=1)
    before = FeatureStore(tmp_path / "s").frames(collection[0].track_id)
    result = prepare(collection, out_dir=tmp_path / "s", workers=2)
    assert result.new == 8 and result.stored == 12
    store = FeatureStore(tmp_path / "s")
    np.testing.assert_array_equal(store.frames(collection[0].track_id), before)
    with pytest.raises(StoreError, match="other settings"):
        prepare(collection, out_dir=tmp_path / "s", config=FeatureConfig(n_mels=64))
    prepare(collection[:2], out_dir=tmp_path / "s", config=FeatureConfig(n_mels=64), overwrite=True)
    assert FeatureStore(tmp_path / "s").frames(collection[0].track_id).shape[1] == 64


def test_incomplete_store_is_refused(collection, tmp_path):
    prepare(collection[:2], out_dir=tmp_path / "s", workers=1)
    (tmp_path / "s" / "DONE").unlink()
    with pytest.raises(StoreError, match="incomplete"):
        FeatureStore(tmp_path / "s")
    with pytest.raises(StoreError, match="not a feature store"):
        FeatureStore(tmp_path / "elsewhere")


def _store_contents(path):
    store = FeatureStore(path)
    return {tid: store.frames(tid) for tid in store.track_ids}


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    cat_path = synth_collection(tmp_path / "audio", n_artists=4, albums_per_artist=2, songs_per_album=3, seconds=6.0, seed=3)
    prepare(read_csv(cat_path), out_dir=tmp_path / "ref", workers=2)
    reference = _store_contents(tmp_path / "ref")
    out = tmp_path / "killed"
    env = {**os.environ, "MUSICREP_QUIET": "1"}
    rng = np.random.default_rng(7)
    for attempt in range(3):  # kill at a few random points, then finish
        proc = subprocess.Popen(
            [sys.executable, "-m", "musicrep", "-q", "prepare", str(cat_path), "-o", str(out), "--workers", "1"],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(0.8 + rng.random() * 1.5)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if (out / "DONE").exists():
            break
    subprocess.run([sys.executable, "-m", "musicrep", "-q", "prepare", str(cat_path), "-o", str(out)], env=env, check=True)
    resumed = _store_contents(out)
    assert resumed.keys() == reference.keys()
    for tid in reference:
        np.testing.assert_array_equal(resumed[tid], reference[tid])
    assert not (out / "parts").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_index_holds_catalog_extras(tmp_path, tone_file):
    path = tone_file("a b ü.wav", seconds=4.0)
    cat = Catalog([Track("t1", str(path), artist="Ärtist", extra={"split": "train", "license": "CC0"})])
    prepare(cat, out_dir=tmp_path / "s", workers=1)
    store = FeatureStore(tmp_path / "s")
    assert store.catalog.by_id("t1").extra == {"split": "train", "license": "CC0"}
    assert store.catalog.by_id("t1").artist == "Ärtist"
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta["total_frames"] == store.n_frames("t1") == 1 + 4 * 22050 // 512
    with open(tmp_path / "s" / "index.csv", newline="") as fh:
        assert list(csv.DictReader(fh))[0]["offset"] == "0"


def test_in_process_mode_equals_pool(collection, tmp_path):
    prepare(collection[:3], out_dir=tmp_path / "a", workers=0)
    prepare(collection[:3], out_dir=tmp_path / "b", workers=2)
    a, b = _store_contents(tmp_path / "a"), _store_contents(tmp_path / "b")
    assert a.keys() == b.keys()
    for tid in a:
        np.testing.assert_array_equal(a[tid], b[tid])


def test_workers_that_cannot_start_give_a_clear_error(tmp_path):
    # With torch loaded, workers are spawned, and spawn re-imports __main__: a
    # script read from stdin cannot be re-imported.
    script = (
        "import torch\n"
        "from musicrep.data.catalog import Catalog, Track\n"
        "from musicrep.data.prepare import prepare\n"
        f"prepare(Catalog([Track('a', {str(tmp_path / 'x.wav')!r})]), out_dir={str(tmp_path / 's')!r}, workers=1)\n"
    )
    proc = subprocess.run([sys.executable, "-"], input=script, text=True, capture_output=True, cwd=tmp_path)
    assert proc.returncode != 0
    assert "could not start worker processes" in proc.stderr


def test_from_arrays_round_trip(tmp_path, rng):
    frames = [rng.standard_normal((200 + i, 128)).astype(np.float32) for i in range(3)]
    tracks = [Track(f"t{i}", f"/x/{i}.wav", artist=f"A{i}", extra={"split": "train"}) for i in range(3)]
    from musicrep.data.store import from_arrays

    store = from_arrays(tmp_path / "s", tracks=tracks, frames=frames)
    assert store.track_ids == ["t0", "t1", "t2"]
    np.testing.assert_allclose(store.frames("t2"), frames[2], rtol=2**-10, atol=1e-3)
    assert store.catalog.by_id("t1").extra == {"split": "train"}
    with pytest.raises(StoreError, match="already holds"):
        from_arrays(tmp_path / "s", tracks=tracks, frames=frames)
    with pytest.raises(StoreError, match="must be"):
        from_arrays(tmp_path / "t", tracks=tracks[:1], frames=[np.zeros((10, 64))])


def test_start_method_follows_torch(monkeypatch):
    import multiprocessing as mp

    from musicrep.data import prepare_workers as store_module

    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch") or object())
    assert store_module._start_method() == "spawn"
    monkeypatch.delitem(sys.modules, "torch")
    expected = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    assert store_module._start_method() == expected


def test_a_worker_that_dies_costs_only_its_track(collection, tmp_path, monkeypatch):
    import musicrep.data.prepare_workers as store_module

    real = store_module.compute_track
    victim = collection[1].path

    def dies_on_victim(path, **kwargs):
        if path == victim:
            os._exit(1)  # a decoder crash takes the whole worker process down
        return real(path, **kwargs)

    # fork, so the workers inherit the patched function
    monkeypatch.setattr(store_module, "_start_method", lambda: "fork")
    monkeypatch.setattr(store_module, "compute_track", dies_on_victim)
    result = prepare(collection[:4], out_dir=tmp_path / "s", workers=2)
    assert result.stored == 3
    assert [(e["track_id"], e["reason"]) for e in result.errors] == [(collection[1].track_id, "decoder crashed")]
    assert FeatureStore(tmp_path / "s").track_ids == [t.track_id for i, t in enumerate(collection[:4]) if i != 1]
