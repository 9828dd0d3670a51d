"""Overlap between a transfer collection and a run's training songs: by id, path and content."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musicrep.data.catalog import Track
from musicrep.config import FeatureConfig
from musicrep.evaluation.provenance import training_songs, transfer_overlap
from musicrep.data.splits import Split
from musicrep.data.store import from_arrays as write_store

N = 12  # training-store songs t0..t11, 20 frames each


def _frames(i, n_frames=20):
    return np.random.default_rng(i).normal(size=(n_frames, 128)).astype(np.float32)


def _track(tid, path):
    return Track(track_id=tid, path=path, artist="A", album="B", genre="g")


@pytest.fixture(scope="module")
def train_store(tmp_path_factory):
    tracks = [_track(f"t{i}", f"/music/t{i}.wav") for i in range(N)]
    return write_store(tmp_path_factory.mktemp("prov") / "train-store", tracks=tracks, frames=[_frames(i) for i in range(N)])


def _split(concept, parts):
    return Split(concept=concept, rows=tuple((t, "x", p) for p, ids in parts.items() for t in ids))


def make_run(root, *, concept="joint", store=None, splits=None, config=True):
    """A run folder as train() leaves it, as far as provenance reads it."""
    root.mkdir(parents=True)
    if config:
        (root / "config.yaml").write_text(f"concept: {concept}\nepochs: 3\n")
    if store is not None:
        (root / "run.json").write_text(json.dumps({"store": str(store), "world_size": 1}))
    splits = splits if splits is not None else {
        # train: t0-t3 by artist, t8 t9 by album; t4-t7, t10, t11 held out
        "artist": {"train": ["t0", "t1", "t2", "t3"], "valid": ["t4", "t5"], "test": ["t6", "t7"]},
        "album": {"train": ["t8", "t9"], "valid": ["t10"], "test": ["t11"]},
    }
    (root / "split").mkdir()
    for concept_name, parts in splits.items():
        _split(concept_name, parts).write_csv(root / "split" / f"{concept_name}.csv")
    return root


def test_the_training_store_itself_overlaps_by_id_path_and_content(train_store, tmp_path):
    run = make_run(tmp_path / "runs" / "joint", store=train_store.path)
    (line,) = transfer_overlap([run], store=train_store)
    assert line.startswith(f"{run}: 6 of 12 transfer songs are training songs of this encoder")
    assert "(same track id: 6, same audio path: 6, same audio content: 6)" in line
    assert "memorisation, not transfer" in line


def test_only_train_rows_of_the_runs_own_concepts_count(train_store, tmp_path):
    joint = make_run(tmp_path / "joint", store=train_store.path)
    artist = make_run(tmp_path / "artist", concept="artist", store=train_store.path)
    assert training_songs(run=joint).track_ids == {"t0", "t1", "t2", "t3", "t8", "t9"}
    assert training_songs(run=artist).track_ids == {"t0", "t1", "t2", "t3"}
    held_out = ["t4", "t5", "t6", "t7", "t10", "t11"]
    assert transfer_overlap([joint, artist], store=train_store, track_ids=held_out) == []
    # the album split's training songs are the joint model's, not the artist model's
    lines = transfer_overlap([joint, artist], store=train_store, track_ids=["t8", "t9", "t10"])
    assert len(lines) == 1 and lines[0].startswith(f"{joint}: 2 of 3 transfer songs")


def test_the_track_concept_reads_track_csv_else_artist_csv(train_store, tmp_path):
    run = make_run(tmp_path / "track", concept="track", store=train_store.path)
    assert training_songs(run=run).track_ids == {"t0", "t1", "t2", "t3"}  # artist.csv
    _split("track", {"train": ["t5"], "test": ["t6"]}).write_csv(run / "split" / "track.csv")
    assert training_songs(run=run).track_ids == {"t5"}
    # a checkpoint file stands for its run folder
    (run / "best.pt").write_bytes(b"")
    assert training_songs(run=run / "best.pt").track_ids == {"t5"}


def test_a_renamed_copy_is_found_by_its_content(train_store, tmp_path):
    run = make_run(tmp_path / "run", store=train_store.path)
    # t0..t3 and t8 under new ids and new paths; t4 (held out) and one new song
    src = [0, 1, 2, 3, 8, 4]
    tracks = [_track(f"copy{i}", f"/elsewhere/c{i}.flac") for i in src] + [_track("new", "/elsewhere/new.flac")]
    frames = [_frames(i) for i in src] + [_frames(99)]
    copy = write_store(tmp_path / "copy", tracks=tracks, frames=frames)
    (line,) = transfer_overlap([run], store=copy)
    assert "5 of 7 transfer songs" in line
    assert "(same track id: 0, same audio path: 0, same audio content: 5)" in line


def test_same_path_and_same_id_are_found_without_the_same_frames(train_store, tmp_path):
    run = make_run(tmp_path / "run", store=train_store.path)
    tracks = [_track("x", "/music/t1.wav"), _track("t2", "/other/t2.wav"), _track("y", "/other/y.wav")]
    other = write_store(tmp_path / "other", tracks=tracks, frames=[_frames(50), _frames(51), _frames(52)])
    (line,) = transfer_overlap([run], store=other)
    assert "2 of 3 transfer songs" in line
    assert "(same track id: 1, same audio path: 1, same audio content: 0)" in line


def test_content_is_not_compared_across_feature_settings(train_store, tmp_path):
    run = make_run(tmp_path / "run", store=train_store.path)
    other = write_store(tmp_path / "hop256", tracks=[_track("z0", "/z/0.wav")], frames=[_frames(0)],
                        config=FeatureConfig(hop_length=256))
    assert transfer_overlap([run], store=other) == []  # the same frames, but other settings: not a match
    other2 = write_store(tmp_path / "hop256b", tracks=[_track("t0", "/z/0.wav")], frames=[_frames(0)],
                         config=FeatureConfig(hop_length=256))
    (line,) = transfer_overlap([run], store=other2)
    assert "same track id: 1, same audio path: 0, audio content not compared" in line


def test_a_gone_training_store_falls_back_to_track_ids_and_says_so(train_store, tmp_path):
    run = make_run(tmp_path / "run", store=tmp_path / "deleted-store")
    (line,) = transfer_overlap([run], store=train_store)
    assert "6 of 12 transfer songs" in line and "(same track id: 6)" in line
    assert f"its training store {tmp_path / 'deleted-store'} is gone, so only track ids were compared" in line
    no_json = make_run(tmp_path / "nojson")
    assert "names no training store" in transfer_overlap([no_json], store=train_store)[0]


def test_a_clean_store_and_a_run_without_split_give_no_warning(train_store, tmp_path):
    run = make_run(tmp_path / "run", store=train_store.path)
    clean = write_store(tmp_path / "clean", tracks=[_track(f"c{i}", f"/clean/{i}.wav") for i in range(3)],
                        frames=[_frames(100 + i) for i in range(3)])
    assert transfer_overlap([run], store=clean) == []
    bare = tmp_path / "bare"
    bare.mkdir()
    assert transfer_overlap([bare], store=train_store) == []


def test_an_unreadable_split_is_reported_not_raised(train_store, tmp_path):
    run = make_run(tmp_path / "run", store=train_store.path)
    (run / "split" / "artist.csv").write_text("track_id,split\nt0,train\n")  # no concept_label column
    (line,) = transfer_overlap([run], store=train_store)
    assert line.startswith(f"{run}: cannot tell") and "concept_label" in line
