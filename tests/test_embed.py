"""Song embeddings: file path == store path == training code path; arrays at any rate."""

from __future__ import annotations

from pathlib import Path

import dataclasses
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

import musicrep
from musicrep.inference import embed as embed_mod
from musicrep.inference import store_embeddings
from musicrep.training.checkpoint import save_checkpoint
from musicrep.cli import main
from musicrep.config import FeatureConfig, to_dict
from musicrep.inference.discovery import find_audio
from musicrep.inference.embed import EmbeddingModel
from musicrep.inference.store_embeddings import embed_store
from musicrep.errors import AudioError, TooShortAudioError, UnreadableAudioError
from musicrep.training.model import Encoder, split_segments, song_embedding


def make_run(run_dir: Path, store, *, concept: str = "artist", width: int = 16, seed: int = 0) -> Path:
    """A run folder whose best.pt is an untrained encoder with real normalisation.

    BatchNorm running statistics are randomised so that songs get distinct vectors.
    """
    torch.manual_seed(seed)
    enc = Encoder(width=width)
    enc.set_normalization(*store.stats())
    with torch.no_grad():
        for mod in enc.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.normal_(0.0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    payload = {
        "model": enc.state_dict(), "model_config": dataclasses.asdict(enc.model_config),
        "feature_config": to_dict(FeatureConfig()), "step": 0, "epoch": 0, "best_metric": 0.0,
        "config": {}, "concept": concept,
    }
    save_checkpoint(payload, path=run_dir / "best.pt")
    return run_dir


@pytest.fixture(scope="module")
def run(synth_store, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"), synth_store)


@pytest.fixture(scope="module")
def model(run):
    return musicrep.load(run)


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_load_is_exported_lazily_and_reused(model, run):
    assert isinstance(model, EmbeddingModel)
    assert model.concept == "artist" and model.dim == 32
    assert model.checkpoint == (run / "best.pt").resolve()
    assert not model.encoder.training
    assert float(model.encoder.std) != 1.0  # the normalisation came with the checkpoint


def test_file_equals_store_and_training_path(model, synth_store):
    ids = synth_store.track_ids[:6]
    _, from_store = embed_store(model, store=synth_store, track_ids=ids, cache=False)
    paths = [Path(synth_store.catalog.by_id(t).path) for t in ids]
    done, errors = model.embed_files(paths)
    assert not errors
    from_files = np.stack([done[p].vector for p in paths])
    # the training code's song vector: model.song_embedding on the stored frames
    training = np.stack([song_embedding(model.encoder, frames=synth_store.frames(t)) for t in ids])
    np.testing.assert_allclose(from_files, from_store, atol=1e-5)
    np.testing.assert_allclose(from_store, training, atol=1e-5)
    # and the songs are told apart (a constant output would pass the lines above)
    assert np.abs(from_store[0] - from_store[-1]).max() > 1e-3


def test_in_memory_encoder_keeps_its_mode(model, synth_store):
    enc = Encoder(width=16)
    enc.load_state_dict(model.encoder.state_dict())
    enc.train()
    lent = EmbeddingModel(enc, feature_config=synth_store.feature_config)
    ids, vectors = embed_store(lent, store=synth_store, track_ids=synth_store.track_ids[:2])  # never cached
    assert enc.training  # eval only during the call
    np.testing.assert_allclose(vectors, embed_store(model, store=synth_store, track_ids=ids, cache=False)[1], atol=1e-6)


def test_batching_across_files_changes_nothing(model, synth_store):
    paths = [Path(synth_store.catalog.by_id(t).path) for t in synth_store.track_ids[:5]]
    one_by_one = np.stack([model.embed_file(p).vector for p in paths])
    small = EmbeddingModel(model.encoder, feature_config=model.feature_config, batch_size=3)
    batched, _ = small.embed_files(paths, workers=2)
    np.testing.assert_allclose(np.stack([batched[p].vector for p in paths]), one_by_one, atol=1e-5)


def test_store_embeddings_cached_under_run(model, synth_store, run, monkeypatch):
    ids, vectors = embed_store(model, store=synth_store)
    assert ids == synth_store.track_ids and vectors.shape == (len(ids), 32)
    cached = sorted((run / "embeddings").glob("*"))
    assert [p.suffix for p in cached] == [".json", ".npy"]
    assert synth_store.feature_config.hash() in cached[0].name

    def boom(*a, **k):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(store_embeddings, "_embed_store_tracks", boom)
    sub = [ids[3], ids[0]]
    got_ids, got = embed_store(run, store=synth_store.path, track_ids=sub)  # run folder + store folder
    assert got_ids == sub
    np.testing.assert_array_equal(got, vectors[[3, 0]])


def test_any_sample_rate_and_layout(model, synth_store):
    path = synth_store.catalog[0].path
    y, sr = sf.read(path, dtype="float32")
    ref = model.embed_file(path).vector
    np.testing.assert_allclose(model.embed(y, sr).vector, ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model.embed(y, sr=sr)), ref, atol=1e-5)
    np.testing.assert_allclose(model.embed(np.stack([y, y], axis=1), sr).vector, ref, atol=1e-5)
    np.testing.assert_allclose(model.embed(np.stack([y, y]), sr).vector, ref, atol=1e-5)
    pcm = np.round(y * 32767).astype(np.int16)
    assert _cos(model.embed(pcm, sr).vector, ref) > 0.9999
    for rate in (44100, 48000):
        e = model.embed(soxr.resample(y, sr, rate), rate)
        assert _cos(e.vector, ref) > 0.999, rate
    # a genuinely different song is further away than any resampled copy
    other = model.embed_file(synth_store.catalog[-1].path).vector
    assert _cos(other, ref) < 0.999
    with pytest.raises(musicrep.MusicrepError, match="sr="):
        model.embed(y, 0)


def test_segments_have_time_stamps(model, synth_store):
    tid = synth_store.track_ids[0]
    e = model.embed_file(synth_store.catalog.by_id(tid).path, segments=True)
    seg = 129 * 512 / 22050
    n = synth_store.n_frames(tid) // 129
    assert e.n_segments == n == 2  # 8 s -> 345 frames -> two whole segments
    np.testing.assert_allclose(e.times, [[i * seg, (i + 1) * seg] for i in range(n)])
    np.testing.assert_allclose(e.segments.mean(axis=0), e.vector, atol=1e-6)
    stored = model.forward(split_segments(synth_store.frames(tid)))
    np.testing.assert_allclose(e.segments, stored, atol=1e-5)
    assert e.duration == pytest.approx(synth_store.n_frames(tid) * 512 / 22050)


def test_bad_files_are_reported_and_skipped(model, synth_store, tmp_path, tone_file):
    good = Path(synth_store.catalog[0].path)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wave file" * 10)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    short = tone_file("short.wav", seconds=1.0)
    results = list(model.iter_files([corrupt, good, empty, short]))
    assert [p for p, _ in results] == [corrupt, good, empty, short]
    kinds = [type(r) for _, r in results]
    assert kinds[1] is embed_mod.Embedding
    assert kinds[0] is UnreadableAudioError and kinds[3] is TooShortAudioError
    assert all(str(p) in str(r) for p, r in results if isinstance(r, AudioError))
    with pytest.raises(TooShortAudioError, match="<array>"):
        model.embed(np.ones(22050, np.float32) * 0.1, 22050)


def test_embed_cli_tree_table_skip_and_errors(run, synth_store, tmp_path, capsys):
    audio = Path(synth_store.catalog[0].path).parents[2]  # the collection root
    catalog = audio / "catalog.csv"
    (audio / "Artist 00" / "junk.wav").write_bytes(b"junk")
    try:
        out = tmp_path / "out"
        assert main(["-q", "embed", "--run", str(run), str(audio / "Artist 00"), "-o", str(out), "--segments",
                     "--catalog", str(catalog)]) == 0
        npz = sorted(out.rglob("*.npz"))
        assert len(npz) == 10 and npz[0].relative_to(out).parts == ("Album 00-00", "01 Song 1.flac.npz")
        with np.load(npz[0], allow_pickle=False) as z:
            assert z["vector"].shape == (32,) and z["segments"].shape == (2, 32) and z["times"].shape == (2, 2)
            assert str(z["track_id"]) == "a00-b00-s00" and str(z["artist"]) == "Artist 00"
        err = capsys.readouterr().err
        assert "junk.wav" in err and "cannot decode" in err
        before = npz[0].stat().st_mtime_ns
        assert main(["-q", "embed", "--run", str(run), str(audio / "Artist 00"), "-o", str(out)]) == 0
        assert "10 already done" in capsys.readouterr().out and npz[0].stat().st_mtime_ns == before
        table = tmp_path / "all.csv"
        assert main(["-q", "embed", "--run", str(run), str(audio / "Artist 01"), "--table", str(table),
                     "--catalog", str(catalog)]) == 0
        import csv

        rows = list(csv.DictReader(table.open()))
        assert len(rows) == 10 and rows[0]["artist"] == "Artist 01" and rows[0]["track_id"] == "a01-b00-s00"
        vec = np.array([float(rows[0][f"e{i}"]) for i in range(32)])
        np.testing.assert_allclose(vec, musicrep.load(run).embed_file(rows[0]["path"]).vector, rtol=1e-5, atol=1e-6)
        # nothing usable -> exit status 1
        assert main(["-q", "embed", "--run", str(run), str(audio / "Artist 00" / "junk.wav"), "-o", str(tmp_path / "x")]) == 1
    finally:
        (audio / "Artist 00" / "junk.wav").unlink()


def test_find_audio(tmp_path, tone_file):
    a = tone_file("a/x.wav")
    b = tone_file("a/b/y.flac")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    assert find_audio([tmp_path / "a"]) == [b, a]
    assert find_audio([tmp_path / "a"], recursive=False) == [a]
    with pytest.raises(musicrep.MusicrepError, match="nope"):
        find_audio([tmp_path / "nope"])
