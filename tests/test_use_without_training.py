"""A user's first hour: every tool works with the shipped model, and its outputs are usable.

The shipped model here is a tiny joint run trained in seconds and packaged with
:func:`musicrep.inference.pretrained.package_model`; ``musicrep.inference.pretrained.models_dir``
points at it, as it points at ``musicrep/models/`` in an installed package.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import musicrep
from musicrep.inference import pretrained
from musicrep.data.catalog import Catalog
from musicrep.cli import main
from musicrep.config import load_config
from musicrep.inference.embed import EmbeddingModel
from musicrep.testing import synth_song
from musicrep.training.settings import TrainConfig
from musicrep.training.train import train

from test_embed import make_run

TINY = ["concept=joint", "width=8", "negatives=1", "batch_size=4", "steps_per_epoch=2", "epochs=1",
        "valid_batches=1", "songs_per_artist=10", "songs_per_album=5", "tensorboard=false", "threads=1"]


@pytest.fixture(scope="module")
def trained(synth_store, tmp_path_factory):
    """A finished tiny joint run on the synthetic store (its run.json names that store)."""
    return train(synth_store.path, out_dir=tmp_path_factory.mktemp("run") / "joint", config=load_config(TrainConfig, path=None, overrides=TINY))


@pytest.fixture(scope="module")
def packaged(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    pretrained.package_model(run_dir=trained, out_dir=folder)
    return folder


@pytest.fixture(autouse=True)
def shipped(packaged, monkeypatch):
    monkeypatch.setattr(pretrained, "models_dir", lambda: packaged)
    return packaged / pretrained.MODEL_FILE


@pytest.fixture(scope="module")
def catalog(synth_store):
    return Path(synth_store.catalog[0].path).parents[2] / "catalog.csv"


def _subset(synth_store, path: Path, rows: slice) -> Path:
    Catalog(list(synth_store.catalog)[rows]).write_csv(path)
    return path


def _song(path: Path, *, seconds: float = 20.0, artist: int = 1, song: int = 7) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth_song(artist=artist, album=0, song=song, seconds=seconds), 22050)
    return path


# --------------------------------------------------------------------------- 1. the shipped model is the default


def test_load_without_a_run_is_the_shipped_model(shipped, caplog):
    with caplog.at_level(logging.INFO, logger="musicrep"):
        model = musicrep.load()
    from musicrep.inference.embed import SHIPPED_NOTE

    assert isinstance(model, EmbeddingModel) and model.shipped and model.concept == "joint"
    assert model.checkpoint == shipped.resolve() and model.dim == 16
    assert SHIPPED_NOTE in caplog.text and "MODEL_CARD.md" in SHIPPED_NOTE and "--run RUN" in SHIPPED_NOTE


def test_embed_without_run_uses_the_shipped_model(shipped, tmp_path, caplog):
    song = _song(tmp_path / "some.wav", seconds=8.0)
    with caplog.at_level(logging.INFO, logger="musicrep"):
        assert main(["embed", str(song), "-o", str(tmp_path / "out")]) == 0
    assert caplog.text.count("using the shipped model musicrep-games-joint") == 1
    with np.load(tmp_path / "out" / "some.wav.npz", allow_pickle=False) as z:
        assert str(z["checkpoint_sha256"]) == pretrained.sha256(shipped)
        np.testing.assert_allclose(z["vector"], musicrep.load().embed_file(song).vector, atol=1e-6)


def test_index_build_and_search_without_run(synth_store, catalog, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["-q", "index", "build", "--catalog", str(catalog), "-o", str(out), "--store",
                 str(synth_store.path)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["concepts"]) == ["joint"] and manifest["default_concept"] == "joint"
    assert manifest["concepts"]["joint"]["shipped"] == "musicrep-games-joint"
    assert "model=musicrep-games-joint (shipped)" in capsys.readouterr().out
    # a query by file loads the shipped model again, from the manifest
    path = synth_store.catalog[3].path
    assert main(["-q", "search", str(out), "--query", path, "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and synth_store.catalog[3].track_id not in "".join(lines[2:])  # itself left out
    # an index whose shipped model changed since the build is refused for file queries, not answered wrongly
    manifest["concepts"]["joint"]["checkpoint_sha256"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["-q", "search", str(out), "--query", path]) == 2
    assert "rebuild the index" in capsys.readouterr().err


# --------------------------------------------------------------------------- 2. index build reuses features


def test_index_build_decodes_each_file_once_for_all_runs(synth_store, tmp_path, monkeypatch, caplog):
    runs = [make_run(tmp_path / "a", synth_store, concept="artist", seed=1),
            make_run(tmp_path / "b", synth_store, concept="album", seed=2)]
    cat = _subset(synth_store, tmp_path / "cat.csv", slice(0, 12))
    decoded: list[Path] = []
    load_frames = EmbeddingModel._load_frames
    monkeypatch.setattr(EmbeddingModel, "_load_frames", lambda self, p: decoded.append(p) or load_frames(self, p))
    with caplog.at_level(logging.INFO, logger="musicrep"):
        assert main(["index", "build", "--run", f"artist={runs[0]}", "--run", f"album={runs[1]}",
                     "--catalog", str(cat), "-o", str(tmp_path / "idx")]) == 0
    assert len(decoded) == len(set(decoded)) == 12  # was 24: once per run
    assert "--store STORE" in caplog.text  # and the hint that a store is faster still
    # the vectors are each run's own
    from musicrep.inference.index import SearchIndex

    index = SearchIndex.load(tmp_path / "idx")
    tid = synth_store.track_ids[5]
    for concept, run in (("artist", runs[0]), ("album", runs[1])):
        want = musicrep.load(run).embed_file(synth_store.catalog.by_id(tid).path).vector
        np.testing.assert_allclose(index.vector(tid, by=concept), want / np.linalg.norm(want), atol=1e-5)


def test_index_build_reads_the_store_its_run_was_trained_on(trained, synth_store, catalog, tmp_path, monkeypatch):
    def no_decoding(self, path):
        raise AssertionError(f"decoded {path} although the run's store holds it")

    explicit = tmp_path / "explicit"
    assert main(["-q", "index", "build", "--run", str(trained), "--catalog", str(catalog), "-o", str(explicit),
                 "--store", str(synth_store.path)]) == 0
    monkeypatch.setattr(EmbeddingModel, "_load_frames", no_decoding)
    found = tmp_path / "found"
    assert main(["-q", "index", "build", "--run", str(trained), "--catalog", str(catalog), "-o", str(found)]) == 0
    from musicrep.inference.index import SearchIndex

    a, b = SearchIndex.load(explicit), SearchIndex.load(found)
    assert a.track_ids == b.track_ids and len(b) == 60
    np.testing.assert_allclose(b.all_vectors(), a.all_vectors(), atol=1e-6)


def test_index_build_checks_its_output_before_any_work(synth_store, catalog, tmp_path, monkeypatch, capsys):
    import musicrep.inference.index_build as index_build

    def no_loading(*a, **k):
        raise AssertionError("loaded a model before checking the output")

    monkeypatch.setattr(index_build, "load", no_loading)
    busy = tmp_path / "music"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["-q", "index", "build", "--catalog", str(catalog), "-o", str(busy)]) == 2
    assert "'notes.txt'" in capsys.readouterr().err and (busy / "notes.txt").read_text() == "mine"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["-q", "index", "build", "--catalog", str(catalog), "-o", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err


# --------------------------------------------------------------------------- 3. ONNX and whole songs


def test_export_without_run_exports_the_shipped_model(shipped, tmp_path):
    onnx = pytest.importorskip("onnx")
    assert main(["-q", "export", "-o", str(tmp_path / "m.onnx"), "--no-check"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["musicrep.checkpoint_sha256"] == pretrained.sha256(shipped) and meta["musicrep.concept"] == "joint"


def test_exported_model_gives_embeds_song_vector_as_documented(trained, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    song = _song(tmp_path / "whole.wav", seconds=40.0)  # 13 segments and a partial one
    assert main(["-q", "embed", "--run", str(trained), str(song), "-o", str(tmp_path / "out")]) == 0
    with np.load(tmp_path / "out" / "whole.wav.npz", allow_pickle=False) as z:
        want = z["vector"]
    assert main(["-q", "export", "--run", str(trained), "-o", str(tmp_path / "m.onnx")]) == 0
    assert "song vector = mean" in capsys.readouterr().out
    from musicrep.inference.export import INPUT_NAME, OUTPUT_NAME, onnx_song_vector

    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert "[segments, 129, 128]" in meta["musicrep.input"] and "mean" in meta["musicrep.song_vector"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["segments", 129, 128]  # the frame axis is fixed
    # as documented: the song's log-mel, cut into 129-frame segments, through the graph, averaged
    y, sr = sf.read(song, dtype="float32")
    frames = musicrep.load(trained).features(y, sr)
    n = frames.shape[0] // 129
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (seg,) = session.run([OUTPUT_NAME], {INPUT_NAME: frames[: n * 129].reshape(n, 129, 128)})
    assert n == 13
    # np.allclose's rtol with the asked-for atol: this tiny model's vectors reach ~250, where
    # float32 sums in two runtimes differ by ~1e-5 relative
    np.testing.assert_allclose(seg.mean(axis=0), want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(onnx_song_vector(session=session, frames=frames), want, rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- 4. outputs people can use


@pytest.mark.parametrize("suffix", [".npz", ".csv", ".npy", ".parquet"])
def test_tables_in_every_format_keep_segments_and_provenance(trained, tmp_path, capsys, suffix):
    music = tmp_path / "music"
    songs = [_song(music / f"{i}.wav", seconds=4.0 + 3.0 * i, song=i) for i in range(3)]
    table = tmp_path / f"vectors{suffix}"
    run = ["--run", str(trained)]
    assert main(["-q", "embed", *run, str(music), "--table", str(table), "--segments"]) == 0
    assert (tmp_path / f"vectors.segments{suffix}").exists()  # --segments used to be dropped in table mode
    from musicrep.inference.outputs import read_table

    model = musicrep.load(trained)
    wanted = {str(s.resolve()): model.embed_file(s, segments=True) for s in songs}
    sha = model.checkpoint_sha()
    got = read_table(table)
    assert got.columns["path"] == sorted(wanted) and got.columns["id"] == got.columns["path"]
    assert set(got.columns["checkpoint_sha256"]) == {sha}
    assert set(got.columns["feature_hash"]) == {model.feature_hash}
    np.testing.assert_allclose(got.vectors, np.stack([wanted[p].vector for p in sorted(wanted)]), rtol=1e-5, atol=1e-5)
    segs = read_table(tmp_path / f"vectors.segments{suffix}")
    assert [e.n_segments for e in wanted.values()] == [1, 2, 3]
    assert len(segs) == 6 and set(segs.columns["checkpoint_sha256"]) == {sha}
    last = [i for i, p in enumerate(segs.columns["path"]) if p == str(songs[2].resolve())]
    assert [segs.columns["segment"][i] for i in last] == [0, 1, 2]
    np.testing.assert_allclose([[segs.columns["start"][i], segs.columns["end"][i]] for i in last],
                               wanted[str(songs[2].resolve())].times, atol=1e-9)
    np.testing.assert_allclose(segs.vectors[last], wanted[str(songs[2].resolve())].segments, rtol=1e-5, atol=1e-5)
    if suffix == ".npy":  # plain numpy and a text file, nothing musicrep-specific needed to read them
        matrix = np.load(table)
        assert matrix.dtype == np.float32 and matrix.shape == (3, 16)
        assert (tmp_path / "vectors.ids.txt").read_text().splitlines() == sorted(wanted)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        data = pq.read_table(table)
        assert {"id", "path", "vector", "checkpoint_sha256", "feature_hash"} <= set(data.column_names)
        assert len(data.column("vector")[0]) == 16
    # a rerun resumes; asking for segments only re-embeds what lacks them
    assert main(["-q", "embed", *run, str(music), "--table", str(table), "--segments"]) == 0
    assert "3 already done" in capsys.readouterr().out


def test_segments_are_kept_in_table_mode_too(trained, tmp_path, capsys):
    music = tmp_path / "music"
    _song(music / "a.wav", seconds=8.0)
    table = tmp_path / "v.csv"
    assert main(["-q", "embed", "--run", str(trained), str(music), "--table", str(table)]) == 0
    assert not (tmp_path / "v.segments.csv").exists()
    assert main(["-q", "embed", "--run", str(trained), str(music), "--table", str(table), "--segments"]) == 0
    assert "embedded 1 file(s)" in capsys.readouterr().out  # re-embedded for its segments, not "already done"
    with open(tmp_path / "v.segments.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["segment"] for r in rows] == ["0", "1"] and float(rows[1]["start"]) == pytest.approx(129 * 512 / 22050)


def test_parquet_without_pyarrow_names_the_extra(trained, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    song = _song(tmp_path / "a.wav", seconds=4.0)
    assert main(["-q", "embed", "--run", str(trained), str(song), "--table", str(tmp_path / "v.parquet")]) == 2
    assert "pip install 'musicrep[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "v.parquet").exists()


# --------------------------------------------------------------------------- 5. search


def _built(tmp_path, rng):
    from musicrep.inference.index_build import build_index

    rows = [{"track_id": f"a{a}-b{b}-s{s}", "path": f"/music/Artist {a}/Album {b}/{s} song.flac",
             "artist": f"Artist {a}", "album": f"Album {b}", "title": f"Song {s}"}
            for a in range(4) for b in range(2) for s in range(4)]
    centres = {r["artist"]: rng.normal(size=12) for r in rows}
    vectors = np.stack([centres[r["artist"]] + 0.2 * rng.normal(size=12) for r in rows])
    build_index(out=tmp_path / "idx", rows=rows, vectors={"artist": vectors})
    return tmp_path / "idx"


def test_search_by_path_fragment_as_json_excluding_the_same_artist(tmp_path, rng, capsys):
    idx = _built(tmp_path, rng)
    assert main(["-q", "search", str(idx), "--query", "Artist 2/Album 1/3 song", "-k", "4", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert set(hits[0]) >= {"id", "path", "artist", "album", "score", "rank"}
    assert all(h["artist"] == "Artist 2" for h in hits) and "a2-b1-s3" not in [h["id"] for h in hits]
    assert hits[0]["score"] >= hits[-1]["score"]
    # --exclude-same artist: other artists only, still k of them
    assert main(["-q", "search", str(idx), "--query", "a2-b1-s3", "-k", "6", "--json", "--exclude-same", "artist"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 6 and all(h["artist"] != "Artist 2" for h in hits)
    assert main(["-q", "search", str(idx), "--query", "a2-b1-s3", "-k", "12", "--json", "--exclude-same", "album"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 12 and not any((h["artist"], h["album"]) == ("Artist 2", "Album 1") for h in hits)
    # an ambiguous fragment lists some candidates
    assert main(["-q", "search", str(idx), "--query", "3 song.flac"]) == 2
    err = capsys.readouterr().err
    assert "is part of 8 indexed paths" in err and err.count("/music/") == 5 and "and 3 more" in err
    assert main(["-q", "search", str(idx), "--query", "nowhere"]) == 2
    assert "neither a track id" in capsys.readouterr().err


def test_exclude_same_with_a_file_needs_its_row(trained, synth_store, tmp_path, capsys):
    out = tmp_path / "idx"
    half = _subset(synth_store, tmp_path / "half.csv", slice(0, 20))
    assert main(["-q", "index", "build", "--run", str(trained), "--catalog", str(half), "-o", str(out),
                 "--store", str(synth_store.path)]) == 0
    capsys.readouterr()
    indexed = synth_store.catalog[2]
    assert main(["-q", "search", str(out), "--query", indexed.path, "--exclude-same", "artist", "--json"]) == 0
    assert all(h["artist"] != indexed.artist for h in json.loads(capsys.readouterr().out))
    stranger = _song(tmp_path / "stranger.wav", seconds=5.0)
    assert main(["-q", "search", str(out), "--query", str(stranger), "--exclude-same", "artist"]) == 2
    assert "is not an indexed track" in capsys.readouterr().err
    assert main(["-q", "search", str(out), "--query", str(stranger), "-k", "3"]) == 0  # without it: fine


def test_index_add_matches_a_full_build_and_refuses_known_ids(trained, synth_store, catalog, tmp_path, capsys):
    from musicrep.inference.index import SearchIndex

    store, run = str(synth_store.path), ["--run", str(trained)]
    first = _subset(synth_store, tmp_path / "first.csv", slice(0, 25))
    more = _subset(synth_store, tmp_path / "more.csv", slice(25, 60))
    idx = tmp_path / "idx"
    assert main(["-q", "index", "build", *run, "--catalog", str(first), "-o", str(idx), "--store", store,
                 "--kind", "exact"]) == 0
    assert main(["-q", "index", "add", str(idx), "--catalog", str(more), "--store", store]) == 0
    assert "35 track(s) added, 60 indexed" in capsys.readouterr().out
    assert sorted(p.name for p in idx.iterdir()) == ["joint.1.faiss", "manifest.json", "skipped.csv", "tracks.1.csv"]
    assert main(["-q", "index", "build", *run, "--catalog", str(catalog), "-o", str(tmp_path / "full"),
                 "--store", store]) == 0
    added, full = SearchIndex.load(idx), SearchIndex.load(tmp_path / "full")
    assert added.track_ids == full.track_ids and added.manifest["build"]["kind"] == "exact"
    np.testing.assert_allclose(added.all_vectors(), full.all_vectors(), atol=1e-6)
    tid = synth_store.track_ids[40]
    assert [h.track_id for h in added.query(tid, k=5)] == [h.track_id for h in full.query(tid, k=5)]
    assert main(["-q", "index", "add", str(idx), "--catalog", str(more), "--store", store]) == 2
    assert "35 track id(s) are already in" in capsys.readouterr().err
    assert SearchIndex.load(idx).manifest["generation"] == 1  # nothing was written
