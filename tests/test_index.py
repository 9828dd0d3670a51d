"""Similarity search: concept sub-indexes, reload, measured recall, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musicrep.cli import main
from musicrep.errors import SearchIndexError
from musicrep.inference.embed import load
from musicrep.inference.faiss_index import build_faiss, normalize
from musicrep.inference.index import SearchIndex
from musicrep.inference.index_build import build_from_runs, build_index, parse_runs
from musicrep.inference.store_embeddings import embed_store

from test_embed import make_run


def _rows(n_artists=6, albums=2, songs=5):
    return [
        {"track_id": f"a{a}-b{b}-s{s}", "path": f"/music/{a}/{b}/{s}.flac", "artist": f"Artist {a}",
         "album": f"Album {a}-{b}", "title": f"Song {s}"}
        for a in range(n_artists) for b in range(albums) for s in range(songs)
    ]


def _concept_vectors(rows, rng, dim=24):
    """Artist space: one centre per artist; album space: one centre per album,
    independent of the artist. Noise keeps songs distinct."""
    artists = {r["artist"] for r in rows}
    albums = {r["album"] for r in rows}
    ca = {a: rng.normal(size=dim) for a in artists}
    cb = {b: rng.normal(size=dim) for b in albums}
    va = np.stack([ca[r["artist"]] + 0.3 * rng.normal(size=dim) for r in rows])
    vb = np.stack([cb[r["album"]] + 0.3 * rng.normal(size=dim) for r in rows])
    return va, vb


def test_search_by_concept_and_reload(tmp_path, rng):
    rows = _rows()
    va, vb = _concept_vectors(rows, rng)
    index = build_index(out=tmp_path / "idx", rows=rows, vectors={"artist": va, "album": vb})
    assert index.default_concept == "artist" and index.concepts == ["artist", "album"]
    q = "a2-b1-s3"
    by_artist = index.search_track(q, k=9, by="artist")
    by_album = index.search_track(q, k=4, by="album")
    assert all(h.artist == "Artist 2" for h in by_artist)  # all 9 other songs of the artist first
    assert all(h.album == "Album 2-1" for h in by_album)
    assert q not in [h.track_id for h in by_artist]
    sims = [h.similarity for h in by_artist]
    assert sims == sorted(sims, reverse=True) and sims[0] <= 1.0 + 1e-6
    # the similarity is the cosine of the raw vectors
    j = [r["track_id"] for r in rows].index(by_artist[0].track_id)
    me = [r["track_id"] for r in rows].index(q)
    cosine = va[me] @ va[j] / (np.linalg.norm(va[me]) * np.linalg.norm(va[j]))
    assert by_artist[0].similarity == pytest.approx(float(cosine), abs=1e-5)

    again = SearchIndex.load(tmp_path / "idx")
    assert [h.track_id for h in again.search_track(q, k=9, by="artist")] == [h.track_id for h in by_artist]
    assert again.search_track(q, k=4, by="album")[0].title == by_album[0].title
    with pytest.raises(SearchIndexError, match="no 'track' sub-index"):
        again.search_track(q, by="track")
    with pytest.raises(SearchIndexError, match="already there"):
        build_index(out=tmp_path / "idx", rows=rows, vectors={"artist": va})


def test_approximate_index_records_measured_recall(tmp_path, rng):
    n, dim = 4000, 32
    centres = rng.normal(size=(40, dim))
    vectors = normalize(centres[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, dim)))
    # kind="hnsw" named: "auto" builds musicrep.inference.index.AUTO_KIND (IVF-Flat since the catalogue-scale benchmark)
    index, info = build_faiss(vectors, kind="hnsw", exact_max=1000, hnsw_m=16, ef_construction=80, n_queries=300)
    assert info["kind"] == "hnsw" and info["recall_queries"] == 300
    assert info["recall_at_10"] >= 0.95 and info["recall_at_10"] == info["recall_curve"][str(info["params"]["efSearch"])]
    # check the recorded figure against an independent exact search
    import faiss

    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    q = vectors[:200]
    _, truth = flat.search(q, 11)
    _, found = index.search(q, 11)
    recall = np.mean([len(set(t[1:]) & set(f)) / 10 for t, f in zip(truth, found)])
    assert abs(recall - info["recall_at_10"]) < 0.05

    rows = [{"track_id": f"t{i}"} for i in range(n)]
    built = build_index(out=tmp_path / "ann", rows=rows, vectors={"track": vectors}, kind="hnsw", exact_max=1000,
                        hnsw_m=16, ef_construction=80, n_queries=300)
    manifest = json.loads((tmp_path / "ann" / "manifest.json").read_text())
    meta = manifest["concepts"]["track"]
    assert meta["kind"] == "hnsw" and 0.95 <= meta["recall_at_10"] <= 1.0
    reloaded = SearchIndex.load(tmp_path / "ann")
    assert reloaded._indexes["track"].hnsw.efSearch == meta["params"]["efSearch"]
    assert [h.track_id for h in reloaded.search(vectors[5], k=3)[0]] == [h.track_id for h in built.search(vectors[5], k=3)[0]]
    # unreachable target recall: exact search is kept, and the measured curve says why
    _, fallback = build_faiss(vectors, kind="hnsw", hnsw_m=4, ef_construction=8, target_recall=1.01, n_queries=50)
    assert fallback["kind"] == "exact" and "fallback" in fallback and len(fallback["recall_curve"]) == 8
    by_track = reloaded.search_track("t5", k=10)  # vectors come back out of the HNSW storage
    assert "t5" not in [h.track_id for h in by_track]
    assert len({h.track_id for h in by_track} & {f"t{i}" for i in truth[5][1:]}) >= 8
    assert len(build_faiss(vectors[:500], kind="auto", exact_max=1000)[1]["params"]) == 0  # small: exact


def test_build_from_runs_store_and_files_agree(synth_store, tmp_path):
    run_a = make_run(tmp_path / "run_a", synth_store, concept="artist", seed=1)
    run_j = make_run(tmp_path / "run_j", synth_store, concept="joint", seed=2)
    catalog = Path(synth_store.catalog[0].path).parents[2] / "catalog.csv"
    from_store = build_from_runs(runs=parse_runs([f"artist={run_a}", str(run_j)]), catalog=catalog,
                                 out=tmp_path / "i1", store=synth_store.path)
    assert from_store.concepts == ["artist", "joint"] and from_store.default_concept == "joint"
    assert len(from_store) == 60
    _, vec = embed_store(load(run_a), store=synth_store)
    np.testing.assert_allclose(from_store.vector(synth_store.track_ids[7], by="artist"), normalize(vec[7])[0], atol=1e-6)
    from_files = build_from_runs(runs={"artist": run_a}, catalog=catalog, out=tmp_path / "i2")
    tid = synth_store.track_ids[7]
    assert [h.track_id for h in from_files.search_track(tid, k=5)] == [h.track_id for h in from_store.search_track(tid, k=5, by="artist")]
    # a query by audio file is embedded with the concept's run, and the file itself is left out
    hits = from_store.query(synth_store.catalog.by_id(tid).path, k=5, by="artist")
    assert tid not in [h.track_id for h in hits]
    assert [h.track_id for h in hits] == [h.track_id for h in from_store.search_track(tid, k=5, by="artist")]


def test_index_cli(synth_store, tmp_path, capsys):
    run = make_run(tmp_path / "run", synth_store, concept="artist")
    catalog = Path(synth_store.catalog[0].path).parents[2] / "catalog.csv"
    out = tmp_path / "idx"
    assert main(["-q", "index", "build", "--run", str(run), "--catalog", str(catalog), "-o", str(out),
                 "--store", str(synth_store.path)]) == 0
    assert "artist (default): exact" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["artist.faiss", "manifest.json", "skipped.csv", "tracks.csv"]
    assert main(["-q", "index", "build", "--run", str(run), "--catalog", str(catalog), "-o", str(tmp_path / "ivf"),
                 "--store", str(synth_store.path), "--kind", "ivf"]) == 0
    assert "artist (default): ivf nlist=1 nprobe=1 dim=" in capsys.readouterr().out  # 60 songs: one list
    assert main(["-q", "search", str(out), "--query", "a01-b00-s02", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "nearest to a01-b00-s02 by artist:" and len(lines) == 5
    assert "Artist" in lines[2] and "Album" in lines[2] and "Song" in lines[2]
    assert main(["-q", "search", str(out), "--query", "a01-b00-s02", "--by", "album"]) == 2
    assert "no 'album' sub-index" in capsys.readouterr().err
    assert main(["-q", "search", str(tmp_path), "--query", "x"]) == 2
    assert "not a finished index" in capsys.readouterr().err
    with pytest.raises(SearchIndexError, match="not one of"):
        parse_runs(["genre=RUN"])


@pytest.mark.slow
def test_trained_artist_model_puts_same_artist_first(synth_store, tmp_path):
    """End to end: a tiny artist model trained by musicrep.training.train, indexed, searched."""
    train = pytest.importorskip("musicrep.training.train")
    config = train.TrainConfig(concept="artist", width=16, batch_size=16, epochs=1, steps_per_epoch=20,
                               valid_batches=2, songs_per_artist=10, artist_valid=1, artist_test=1,
                               optimizer="adam", lr=0.003, tensorboard=False, seed=0,
                               bn_momentum=0.1)  # Keras' 0.01 needs far more than 20 steps to settle
    run = train.train(synth_store.path, out_dir=tmp_path / "run", config=config)
    catalog = Path(synth_store.catalog[0].path).parents[2] / "catalog.csv"
    index = build_from_runs(runs={None: run}, catalog=catalog, out=tmp_path / "idx", store=synth_store.path)
    assert index.default_concept == "artist"
    same = [np.mean([h.artist == index.rows[i]["artist"] for h in index.search_track(t, k=5)])
            for i, t in enumerate(index.track_ids)]
    # 9 of the other 59 songs share the artist: chance is 0.15 (an untrained
    # encoder of the same shape scores about that; 20 steps reach about 0.7)
    assert np.mean(same) > 0.45, np.mean(same)


def _mixture(rng, n, dim=32, centres=50, spread=0.5):
    """Unit vectors around ``centres`` random centres: clustered, as song embeddings are."""
    c = rng.normal(size=(centres, dim))
    return normalize(c[rng.integers(0, centres, n)] + spread * rng.normal(size=(n, dim)))


@pytest.mark.parametrize("kind, n, settings", [("ivf", 20_000, {}), ("ivfpq", 6000, {"ivf_nlist": 32, "pq_m": 8})],
                         ids=["ivf-flat", "ivf-pq"])  # fewer vectors for PQ: its codebooks train slowly
def test_ivf_kinds_reach_the_target_and_reload_with_their_nprobe(tmp_path, rng, kind, n, settings):
    import faiss

    vectors = _mixture(rng, n)
    index, info = build_faiss(vectors, kind=kind, n_queries=300, **settings)
    nprobe = info["params"]["nprobe"]
    assert info["kind"] == kind and info["recall_at_10"] >= 0.95 and info["recall_at_10"] == info["recall_curve"][str(nprobe)]
    assert info["params"]["nlist"] == settings.get("ivf_nlist", 512)  # 4 sqrt(n) = 566, capped at n // 39
    if kind == "ivf":  # 50 clusters over 512 lists: one list is not enough, so the tuning had work to do
        assert info["recall_curve"]["1"] < 0.95 and nprobe > 1
    else:  # 6,000 training vectors: 128 centroids per sub-quantiser (40 vectors each), not 256
        assert info["params"]["pq_bits"] == 7 and info["params"]["refine_factor"] >= 1
    # the recorded recall agrees with an independent exact search on other queries
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    q = vectors[-300:]
    _, truth = flat.search(q, 11)
    _, found = index.search(q, 11)
    recall = np.mean([len(set(t[1:]) & set(f)) / 10 for t, f in zip(truth, found)])
    assert abs(recall - info["recall_at_10"]) < 0.05

    rows = [{"track_id": f"t{i}", "artist": f"A{i % 7}"} for i in range(len(vectors))]
    built = build_index(out=tmp_path / "idx", rows=rows, vectors={"track": vectors}, kind=kind, n_queries=300,
                        **settings)
    meta = json.loads((tmp_path / "idx" / "manifest.json").read_text())["concepts"]["track"]
    assert meta["kind"] == kind and meta["params"]["nprobe"] >= 1 and 0.95 <= meta["recall_at_10"] <= 1.0
    assert meta["params"]["nlist"] == info["params"]["nlist"]
    again = SearchIndex.load(tmp_path / "idx")
    assert faiss.extract_index_ivf(again._indexes["track"]).nprobe == meta["params"]["nprobe"]
    for t in ("t5", "t777", f"t{n - 1}"):
        assert [h.track_id for h in again.search_track(t, k=10)] == [h.track_id for h in built.search_track(t, k=10)]
        assert t not in [h.track_id for h in again.search_track(t, k=10)]
    # vectors come back whole (IVF-PQ keeps them beside its codes): `index add` rebuilds from them
    np.testing.assert_allclose(again.all_vectors(), vectors, atol=1e-6)
    np.testing.assert_allclose(again.vector("t777"), vectors[777], atol=1e-6)


def test_ivf_filter_looks_beyond_the_probed_lists(tmp_path, rng):
    """One artist fills the lists nearest the query: excluding it must still give k hits."""
    crowd = normalize(np.tile(rng.normal(size=(1, 16)), (300, 1)) + 0.01 * rng.normal(size=(300, 16)))
    others = _mixture(rng, 2700, dim=16)
    vectors = np.concatenate([crowd, others])
    rows = [{"track_id": f"t{i}", "artist": "Prolific" if i < 300 else f"A{i % 50}"} for i in range(len(vectors))]
    index = build_index(out=tmp_path / "idx", rows=rows, vectors={"track": vectors}, kind="ivf", ivf_nlist=30)
    hits = index.query("t0", k=10, exclude_same="artist")
    assert len(hits) == 10 and all(h.artist != "Prolific" for h in hits)
    # the same ten as exact search with the filter
    sims = vectors[300:] @ vectors[0]
    assert {h.track_id for h in hits} == {f"t{300 + i}" for i in np.argsort(-sims)[:10]}


def test_auto_kind_above_the_exact_limit_and_a_mislabelled_ivf_file(tmp_path, rng):
    from musicrep.inference.faiss_index import AUTO_KIND

    vectors = _mixture(rng, 3000, dim=16)
    _, info = build_faiss(vectors, kind="auto", exact_max=1000, n_queries=200)
    assert info["kind"] == AUTO_KIND and info["recall_at_10"] >= 0.95
    build_index(out=tmp_path / "idx", rows=[{"track_id": f"t{i}"} for i in range(3000)], vectors={"x": vectors},
                kind="ivf")
    path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["concepts"]["x"]["params"]["nprobe"] = 0
    path.write_text(json.dumps(manifest))
    with pytest.raises(SearchIndexError, match="params.nprobe is 0"):
        SearchIndex.load(tmp_path / "idx")
    manifest["concepts"]["x"]["kind"] = "hnsw"
    path.write_text(json.dumps(manifest))
    with pytest.raises(SearchIndexError, match="says kind 'hnsw' but the file holds a IndexIVFFlat"):
        SearchIndex.load(tmp_path / "idx")
