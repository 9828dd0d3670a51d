"""A catalog prepared as N shards and merged is the store one ``prepare`` writes.

The shard of a track depends on its id alone; a merge refuses inputs that would
give a wrong store (unfinished, other settings, a track twice, a shard missing)
and a killed merge (a real SIGKILL) rerun finishes to the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tone
from musicrep.data.catalog import Catalog, Track, read_csv
from musicrep.cli import main
from musicrep.config import FeatureConfig
from musicrep.errors import ConfigError, StoreError
from musicrep.data.merge import merge_stores
from musicrep.data.prepare import prepare
from musicrep.data.shards import read_record, shard_of, shard_record
from musicrep.data.store import FeatureStore

ENV = {**os.environ, "MUSICREP_QUIET": "1", "OMP_NUM_THREADS": "1"}
HAS_FFMPEG = shutil.which("ffmpeg") is not None

# merge_stores in a process of its own that SIGKILLs itself: "copy" after the
# 4th track's frames are written but before that is recorded (so the rerun must
# cut them off again), "done" just before DONE. argv: where out input...
KILLED_MERGE = """
import os, signal, sys
import musicrep.data.merge as shards
where, out, *inputs = sys.argv[1:]
def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "copy":
    shards.CHECKPOINT_BYTES = 1  # a record of progress after every track
    real = shards._checkpoint
    shards._checkpoint = lambda out, plan, tracks, frames: kill() if tracks == 4 else real(out, plan, tracks, frames)
else:
    real = shards.atomic_write_text
    shards.atomic_write_text = lambda path, text: kill() if os.path.basename(path) == "DONE" else real(path, text=text)
shards.merge_stores(inputs=inputs, out_dir=out)
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """Ten tones, an undecodable file, a silent one and (with ffmpeg) a truncated FLAC, interleaved.

    By id, shard 1/3 holds t00; 2/3 t01 t04 t07 t08 and bad; 3/3 the rest.
    """
    root = tmp_path_factory.mktemp("shards")
    tracks = [Track(f"t{i:02d}", str(write_tone(root / f"t{i:02d}.wav", freq=220 + 55 * i, seconds=3.5)),
                    artist=f"A{i % 3}") for i in range(10)]
    bad = root / "bad.wav"
    bad.write_text("not audio\n" * 20)
    tracks.insert(1, Track("bad", str(bad), artist="A9"))
    tracks.insert(5, Track("silent", str(write_tone(root / "silent.wav", amp=0.0)), artist="A9"))
    if HAS_FFMPEG:  # stored from its readable part, with a warning row in errors.csv
        whole = write_tone(root / "whole.flac", freq=330, seconds=5.0)
        blob = whole.read_bytes()
        (root / "cut.flac").write_bytes(blob[: int(len(blob) * 0.98)])
        tracks.insert(3, Track("cut", str(root / "cut.flac"), artist="A9"))
    return Catalog(tracks).write_csv(root / "catalog.csv")


@pytest.fixture(scope="module")
def one_shot(catalog) -> Path:
    out = catalog.parent / "one-shot"
    prepare(read_csv(catalog), out_dir=out, workers=0)
    return out


@pytest.fixture(scope="module")
def shard_stores(catalog) -> list[Path]:
    outs = [catalog.parent / f"shard-{k}" for k in (1, 2, 3)]
    for k, out in enumerate(outs, start=1):
        prepare(read_csv(catalog), out_dir=out, workers=0, shard=(k, 3))
    return outs


def contents(store: Path) -> dict:
    """What must be equal: the frames' bytes, index and errors rows, the header."""
    def rows(name):
        with open(store / name, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    return {"frames": (store / "frames.f16").read_bytes(), "index": rows("index.csv"), "errors": rows("errors.csv"),
            "store.json": json.loads((store / "store.json").read_text())}


def test_three_shards_merged_equal_one_prepare(catalog, one_shot, shard_stores, tmp_path):
    ids = read_csv(catalog).track_ids
    for k, store in enumerate(shard_stores, start=1):
        record = read_record(store)
        assert (record["shard"], record["of"]) == (k, 3)
        assert sorted(record["positions"]) == sorted(t for t in ids if shard_of(t, n=3) == k)
    result = merge_stores(inputs=shard_stores[::-1], out_dir=tmp_path / "merged")  # any order of inputs
    expected = contents(one_shot)
    assert contents(tmp_path / "merged") == expected
    assert [r["track_id"] for r in expected["errors"]][:2] == ["bad", "silent"]  # unusable, then warnings
    assert (result.stored, [e["track_id"] for e in result.errors]) == (len(ids) - 2, ["bad", "silent"])
    assert [w["track_id"] for w in result.warnings] == (["cut"] if HAS_FFMPEG else [])
    assert FeatureStore(tmp_path / "merged").track_ids == [t for t in ids if t not in ("bad", "silent")]
    again = prepare(read_csv(catalog), out_dir=tmp_path / "merged", workers=0)  # a whole store: nothing left to do
    assert again.new == 0 and contents(tmp_path / "merged") == expected


def test_shard_assignment_ignores_row_order(catalog, shard_stores, tmp_path):
    ids = [f"track-{i}" for i in range(300)]
    for tid in ids[:5]:  # the documented formula, the same on any machine and process
        assert shard_of(tid, n=7) == 1 + int.from_bytes(hashlib.sha1(tid.encode()).digest()[:8], "big") % 7
    tracks = [Track(t, f"/x/{t}.wav") for t in ids]
    shuffled = [tracks[i] for i in np.random.default_rng(0).permutation(len(tracks))]
    for k in (1, 2, 3):
        a, b = shard_record(Catalog(tracks), shard=(k, 3)), shard_record(Catalog(shuffled), shard=(k, 3))
        assert set(a["positions"]) == set(b["positions"]) and 70 < len(a["positions"]) < 130
    reversed_cat = Catalog(read_csv(catalog)[::-1]).write_csv(tmp_path / "reversed.csv")
    prepare(read_csv(reversed_cat), out_dir=tmp_path / "s2", workers=0, shard=(2, 3))
    here, there = FeatureStore(tmp_path / "s2"), FeatureStore(shard_stores[1])
    assert sorted(here.track_ids) == sorted(there.track_ids) == ["t01", "t04", "t07", "t08"]
    assert all(np.array_equal(here.frames(t), there.frames(t)) for t in here.track_ids)


def test_merge_refuses_other_feature_settings(catalog, shard_stores, tmp_path):
    prepare(read_csv(catalog), out_dir=tmp_path / "s2", workers=0, shard=(2, 3), config=FeatureConfig(n_mels=64))
    with pytest.raises(StoreError, match=r"other settings \(n_mels 128 vs 64\)"):
        merge_stores(inputs=[shard_stores[0], tmp_path / "s2", shard_stores[2]], out_dir=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge_refuses_a_track_twice(catalog, shard_stores, tmp_path):
    full = read_csv(catalog)
    prepare(Catalog(full[:4]), out_dir=tmp_path / "a", workers=0)
    prepare(Catalog(full[3:6]), out_dir=tmp_path / "b", workers=0)
    with pytest.raises(StoreError, match=f"track {full[3].track_id!r} is in both .*a and .*b"):
        merge_stores(inputs=[tmp_path / "a", tmp_path / "b"], out_dir=tmp_path / "m")
    shutil.copytree(shard_stores[0], tmp_path / "copy-of-1")
    with pytest.raises(StoreError, match="both shard 1/3"):
        merge_stores(inputs=[*shard_stores, tmp_path / "copy-of-1"], out_dir=tmp_path / "m")
    with pytest.raises(StoreError, match="given twice"):
        merge_stores(inputs=[*shard_stores, shard_stores[0]], out_dir=tmp_path / "m")


def test_merge_refuses_an_unfinished_shard(shard_stores, tmp_path):
    shutil.copytree(shard_stores[1], tmp_path / "s2")
    (tmp_path / "s2" / "DONE").unlink()
    with pytest.raises(StoreError, match=r"s2 is unfinished .*--shard 2/3"):
        merge_stores(inputs=[shard_stores[0], tmp_path / "s2", shard_stores[2]], out_dir=tmp_path / "m")


def test_missing_shard_is_named_and_allow_partial_merges(one_shot, shard_stores, tmp_path, capsys):
    present = [shard_stores[0], shard_stores[2]]
    with pytest.raises(StoreError, match=r"shard 2 of 3 of .*catalog.csv is missing.*--allow-partial"):
        merge_stores(inputs=present, out_dir=tmp_path / "m")
    result = merge_stores(inputs=present, out_dir=tmp_path / "m", allow_partial=True)
    assert result.missing == [2]
    whole, part = FeatureStore(one_shot), FeatureStore(tmp_path / "m")
    assert part.track_ids == [t for t in whole.track_ids if shard_of(t, n=3) != 2]  # catalog order
    assert all(np.array_equal(part.frames(t), whole.frames(t)) for t in part.track_ids)
    assert [e["track_id"] for e in result.errors] == ["silent"]


@pytest.mark.parametrize("where", ["copy", "done"])
def test_killed_merge_rerun_gives_the_same_store(where, one_shot, shard_stores, tmp_path):
    out = tmp_path / "merged"
    proc = subprocess.run([sys.executable, "-c", KILLED_MERGE, where, str(out), *map(str, shard_stores)],
                          env=ENV, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (out / "DONE").exists()
    with pytest.raises(StoreError, match="incomplete"):
        FeatureStore(out)
    result = merge_stores(inputs=shard_stores, out_dir=out)
    assert result.resumed == (3 if where == "copy" else result.stored)  # continued, not started over
    assert contents(out) == contents(one_shot)
    done = (out / "DONE").stat().st_mtime_ns
    again = merge_stores(inputs=shard_stores, out_dir=out)  # finished: nothing to do
    assert again.up_to_date and (out / "DONE").stat().st_mtime_ns == done
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_cli_prepares_shards_and_merges(catalog, one_shot, tmp_path, capsys):
    stores = [str(tmp_path / "stores" / f"shard-{k}") for k in (1, 2, 3)]
    for k, store in enumerate(stores, start=1):
        assert main(["-q", "prepare", str(catalog), "-o", store, "--shard", f"{k}/3", "--workers", "0"]) == 0
    assert f"shard-2 (shard 2/3): 4 tracks stored (4 new), 1 unusable" in capsys.readouterr().out
    assert main(["-q", "store", "merge", stores[0], stores[2], "-o", str(tmp_path / "m")]) == 2
    assert "shard 2 of 3" in capsys.readouterr().err
    assert main(["-q", "store", "merge", *stores, "-o", str(tmp_path / "merged")]) == 0
    assert f"merged 3 stores: {len(FeatureStore(one_shot))} tracks stored, 2 unusable" in capsys.readouterr().out
    assert contents(tmp_path / "merged") == contents(one_shot)
    assert main(["-q", "store", "merge", *stores, "-o", str(tmp_path / "merged")]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["-q", "prepare", str(catalog), "-o", str(tmp_path / "x"), "--shard", "4/3"]) == 2
    assert "shard 4/3 is not K/N with whole numbers 1 <= K <= N" in capsys.readouterr().err
    assert main(["-q", "prepare", str(catalog), "-o", str(tmp_path / "x"), "--shard", "2-3"]) == 2
    assert "--shard '2-3' is not K/N" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="1 <= K <= N"):
        prepare(read_csv(catalog), out_dir=tmp_path / "x", shard=(0, 3))


def test_a_store_holds_one_shard_of_one_catalog(catalog, tmp_path):
    cat = read_csv(catalog)
    prepare(Catalog(cat[:3]), out_dir=tmp_path / "s", workers=0, shard=(2, 3))
    with pytest.raises(StoreError, match="holds shard 2/3 .*not shard 1/3"):
        prepare(Catalog(cat[:3]), out_dir=tmp_path / "s", workers=0, shard=(1, 3))
    with pytest.raises(StoreError, match="other rows than this catalog's"):
        prepare(Catalog(cat[:4]), out_dir=tmp_path / "s", workers=0, shard=(2, 3))
    with pytest.raises(StoreError, match=r"holds shard 2/3 .*--shard 2/3"):
        prepare(Catalog(cat[:3]), out_dir=tmp_path / "s", workers=0)
    prepare(Catalog(cat[:1]), out_dir=tmp_path / "whole", workers=0)
    with pytest.raises(StoreError, match="whole catalog, not a shard"):
        prepare(Catalog(cat[:1]), out_dir=tmp_path / "whole", workers=0, shard=(1, 3))


def test_empty_shards_are_finished_stores_and_merge(tmp_path):
    """Two tracks in five shards: three shards hold nothing, and are still done."""
    tracks = [Track(t, str(write_tone(tmp_path / f"{t}.wav", freq=f, seconds=3.5))) for t, f in (("a", 300), ("b", 500))]
    cat = Catalog(tracks)
    assert sorted(shard_of(t, n=5) for t in ("a", "b")) == [4, 5]
    stores = [tmp_path / f"s{k}" for k in range(1, 6)]
    for k, store in enumerate(stores, start=1):
        prepare(cat, out_dir=store, workers=0, shard=(k, 5))
    assert len(FeatureStore(stores[0])) == 0
    prepare(cat, out_dir=tmp_path / "one", workers=0)
    merge_stores(inputs=stores, out_dir=tmp_path / "merged")
    assert contents(tmp_path / "merged") == contents(tmp_path / "one")
