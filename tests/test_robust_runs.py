"""No silent wrong results from the commands that use trained runs.

Each test reproduces one way a command used to finish with exit status 0 and a
wrong or mixed result (or die with a traceback), and checks the named error or
the warning that replaces it: a second writer of an output, an unfinished run,
a resumed embedding job with another model, an edited checkpoint header, an
index whose count or manifest disagrees with its ids or files, a symlink loop.
Runs are written by hand (an untrained width-4 encoder): nothing is trained.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import musicrep
from musicrep.training.checkpoint import load_encoder, save_checkpoint
from musicrep.cli import main
from musicrep.config import FeatureConfig, to_dict
from musicrep.inference.embed import EmbeddingModel, NonFiniteEmbeddingError
from musicrep.inference.embed_job import MixedModelsError, embed_to_files
from musicrep.errors import CheckpointError
from musicrep.inference.index import SearchIndex, SearchIndexError
from musicrep.inference.index_build import build_index
from musicrep.training.model import Encoder
from musicrep.data.splits import make_splits, write_splits

from conftest import write_tone
from test_evaluate import coded_store


def write_run(root: Path, *, done: bool, seed: int = 0, store: Path | None = None, splits=None,
              edit=None) -> Path:
    """A run folder as training leaves it: best.pt, config.yaml, run.json, split/ and, if ``done``, DONE.

    ``edit(payload)`` changes the checkpoint before it is saved (its digest is then
    recomputed, as a careful tamperer would).
    """
    torch.manual_seed(seed)
    enc = Encoder(width=4)
    enc.set_normalization(0.5, 0.25)
    payload = {"model": enc.state_dict(), "model_config": dataclasses.asdict(enc.model_config),
               "feature_config": to_dict(FeatureConfig()), "step": 6, "epoch": 1, "best_metric": 0.9,
               "config": {"width": 4, "concept": "artist"}, "concept": "artist"}
    if edit is not None:
        edit(payload)
    save_checkpoint(payload, path=root / "best.pt")
    (root / "config.yaml").write_text("concept: artist\nwidth: 4\n")
    (root / "run.json").write_text(json.dumps({"store": str(store) if store else ""}))
    if splits is not None:
        write_splits(splits, folder=root / "split")
    if done:
        (root / "DONE").write_text("epoch 1 step 6\n")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A coded store with a split, two finished runs, an unfinished one, three songs and their catalog."""
    root = tmp_path_factory.mktemp("robust")
    store, _tracks = coded_store(root / "store")
    split = make_splits(catalog=store.catalog, songs_per_artist=8, artist_valid=2, artist_test=2,
                        songs_per_album=4, album_valid=1, album_test=1, seed=3)
    kw = {"store": store.path, "splits": {"artist": split["artist"]}}
    music = root / "music"
    songs = [write_tone(music / f"{i} song.wav", freq=220.0 * (i + 1), seconds=4.0) for i in range(3)]
    catalog = root / "catalog.csv"
    catalog.write_text("track_id,path\n" + "".join(f"t{i},{p}\n" for i, p in enumerate(songs)))
    return {
        "root": root, "store": store, "music": music, "songs": songs, "catalog": catalog,
        "run_a": write_run(root / "runs" / "a", done=True, seed=1, **kw),
        "run_b": write_run(root / "runs" / "b", done=True, seed=2, **kw),
        "unfinished": write_run(root / "runs" / "killed", done=False, seed=3, **kw),
    }


# --------------------------------------------------------------------------- 1. one writer per output

HOLD = """
import sys, time
from pathlib import Path
from musicrep.locks import folder_lock
with folder_lock(sys.argv[1]):
    Path(sys.argv[2]).write_text("held")
    time.sleep(60)
"""


def _command(name: str, w: dict, out: Path) -> list[str]:
    run = str(w["run_a"])
    return {
        "embed": ["embed", "--run", run, str(w["music"]), "-o", str(out)],
        "embed table": ["embed", "--run", run, str(w["music"]), "--table", str(out)],
        "index build": ["index", "build", "--run", run, "--catalog", str(w["catalog"]), "-o", str(out)],
        "report": ["report", run, "-o", str(out), "--trials", "30", "--map-points", "0"],
        "export": ["export", "--run", run, "-o", str(out), "--no-check"],
    }[name]


@pytest.mark.parametrize("command", ["embed", "embed table", "index build", "report", "export"])
def test_a_second_writer_of_an_output_fails_at_once_naming_the_holder(world, tmp_path, capsys, command):
    out = tmp_path / {"embed table": "vectors.csv", "export": "model.onnx"}.get(command, "out")
    flag = tmp_path / "flag"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(flag)])
    try:
        deadline = time.time() + 30
        while not flag.exists():
            assert holder.poll() is None and time.time() < deadline, "the holder did not start"
            time.sleep(0.05)
        start = time.time()
        assert main(["-q", *_command(command, world, out)]) == 2
        assert time.time() - start < 5.0  # refused before embedding or evaluating anything
        err = capsys.readouterr().err
        assert err.startswith("error: ") and f"PID {holder.pid}" in err and str(out) in err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- 2. unfinished runs


def _unfinished_command(name: str, w: dict, tmp: Path) -> tuple[list[str], Path]:
    run = str(w["unfinished"])
    out = tmp / ("model.onnx" if name == "export" else "out")
    return {
        "embed": ["embed", "--run", run, str(w["music"]), "-o", str(out)],
        "evaluate holdout": ["evaluate", "holdout", run, "--trials", "30", "--json", str(out)],
        "index build": ["index", "build", "--run", run, "--catalog", str(w["catalog"]), "-o", str(out)],
        "report": ["report", run, "-o", str(out), "--trials", "30", "--map-points", "0"],
        "export": ["export", "--run", run, "-o", str(out), "--no-check"],
    }[name], out


@pytest.mark.parametrize("command", ["embed", "evaluate holdout", "index build", "report", "export"])
def test_a_run_without_done_is_refused_unless_allowed_and_then_flagged(world, tmp_path, capsys, command):
    if command == "export":
        pytest.importorskip("onnx")
    run = world["unfinished"]
    argv, out = _unfinished_command(command, world, tmp_path)
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{run} has no DONE: training did not finish" in err
    assert "musicrep train" in err and "--resume" in err and "--allow-unfinished" in err
    assert not out.exists()

    assert main(["-q", *argv, "--allow-unfinished"]) == 0
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert "WARNING" in said and str(run) in said and "did not finish" in said
    if command == "report":
        text = (out / "report.md").read_text()
        assert "**Unfinished runs:**" in text and str(run) in text.split("## ")[0]  # under the title
        assert json.loads((out / "results.json").read_text())["unfinished_runs"] == [str(run)]
    if command == "index build":
        assert json.loads((out / "manifest.json").read_text())["concepts"]["artist"]["unfinished"] is True
    if command == "evaluate holdout":
        assert any("did not finish" in w for w in json.loads(out.read_text())["warnings"])


def test_the_checkpoint_file_of_an_unfinished_run_is_refused_too(world, tmp_path):
    run = world["unfinished"]
    with pytest.raises(CheckpointError, match="has no DONE"):
        musicrep.load(run / "best.pt")
    with pytest.raises(CheckpointError, match="last.pt"):
        load_encoder(run / "last.pt")  # names the checkpoint asked for
    _enc, info = load_encoder(run, allow_unfinished=True)
    assert info.unfinished and info.run_dir == run and info.epoch == 1
    copy = tmp_path / "kept" / "best.pt"  # a checkpoint kept outside any run is used as it is
    copy.parent.mkdir()
    copy.write_bytes((run / "best.pt").read_bytes())
    assert not load_encoder(copy)[1].unfinished
    assert not load_encoder(world["run_a"])[1].unfinished


# --------------------------------------------------------------------------- 3. resuming with another model


def test_resuming_embed_with_another_model_is_refused_not_mixed(world, tmp_path, capsys):
    a, b, music = world["run_a"], world["run_b"], str(world["music"])
    out = tmp_path / "out"
    assert main(["-q", "embed", "--run", str(a), music, "-o", str(out)]) == 0
    sha_a, sha_b = (musicrep.load(r).checkpoint_sha() for r in (a, b))
    npz = sorted(out.rglob("*.npz"))
    before = [p.read_bytes() for p in npz]
    capsys.readouterr()

    assert main(["-q", "embed", "--run", str(b), music, "-o", str(out)]) == 2  # was: "3 already done", exit 0
    err = capsys.readouterr().err
    assert "3 existing output(s) were made by another model" in err
    assert sha_a[:12] in err and sha_b[:12] in err and str(a / "best.pt") in err and str(b / "best.pt") in err
    assert [p.read_bytes() for p in npz] == before  # nothing written
    with np.load(npz[0], allow_pickle=False) as z:
        assert str(z["checkpoint_sha256"]) == sha_a and str(z["feature_hash"]) == FeatureConfig().hash()
    assert main(["-q", "embed", "--run", str(b), music, "-o", str(out), "--overwrite"]) == 0
    for p in npz:
        with np.load(p, allow_pickle=False) as z:
            assert str(z["checkpoint_sha256"]) == sha_b
    assert main(["-q", "embed", "--run", str(b), music, "-o", str(out)]) == 0  # its own outputs: resumed
    assert "3 already done" in capsys.readouterr().out

    # same checkpoint, other feature settings: not the same vectors either
    model = musicrep.load(b)
    other = EmbeddingModel(model.encoder, feature_config=dataclasses.replace(FeatureConfig(), fmax=8000.0),
                           checkpoint=model.checkpoint)
    with pytest.raises(MixedModelsError, match="features"):
        embed_to_files(model=other, inputs=[music], out=out)


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_tables_record_their_model_and_refuse_another(world, tmp_path, capsys, suffix):
    a, b, music = world["run_a"], world["run_b"], str(world["music"])
    table = tmp_path / f"vectors{suffix}"
    assert main(["-q", "embed", "--run", str(a), music, "--table", str(table)]) == 0
    sha_a = musicrep.load(a).checkpoint_sha()
    if suffix == ".csv":
        rows = list(csv.DictReader(table.open(encoding="utf-8")))
        stamps = {(r["checkpoint_sha256"], r["feature_hash"]) for r in rows}
    else:
        with np.load(table, allow_pickle=False) as z:
            stamps = set(zip(z["checkpoint_sha256"].tolist(), z["feature_hash"].tolist()))
    assert stamps == {(sha_a, FeatureConfig().hash())}
    before = table.read_bytes()
    assert main(["-q", "embed", "--run", str(b), music, "--table", str(table)]) == 2
    assert "3 existing output(s) were made by another model" in capsys.readouterr().err
    assert table.read_bytes() == before


# --------------------------------------------------------------------------- 4. checkpoint headers


def _set(field: str, key: str, value):
    def edit(payload):
        payload[field] = {**payload[field], key: value}
    return edit


def _top(key: str, value):
    def edit(payload):
        payload[key] = value
    return edit


def _nan_std(payload):
    payload["model"] = {**payload["model"], "std": torch.tensor(float("nan"))}


@pytest.mark.parametrize("edit, field", [
    (_set("feature_config", "hop_length", 0), "feature_config.hop_length"),
    (_set("feature_config", "sample_rate", 0), "feature_config.sample_rate"),
    (_set("feature_config", "log_scale", -1.0), "feature_config.log_scale"),
    (_set("feature_config", "fmax", float("nan")), "feature_config.fmax"),
    (_set("feature_config", "fmin", 20000.0), "feature_config.fmax"),
    (_set("feature_config", "n_mels", 64), "feature_config.n_mels"),
    (_set("model_config", "bn_eps", -1.0), "model_config.bn_eps"),
    (_top("epoch", -3), "epoch"),
    (_top("concept", "track_id"), "concept"),  # a column that identifies, never a concept
    (_nan_std, "model.std"),
], ids=["hop 0", "sample rate 0", "negative log scale", "NaN fmax", "fmin above fmax", "n_mels mismatch",
        "negative bn_eps", "negative epoch", "unknown concept", "NaN std"])
def test_an_edited_checkpoint_header_is_a_named_error(tmp_path, edit, field):
    run = write_run(tmp_path / "run", done=True, edit=edit)
    with pytest.raises(CheckpointError) as info:
        musicrep.load(run)
    assert str(run / "best.pt") in str(info.value) and field in str(info.value)


def test_an_edited_header_stops_embed_before_any_output(world, tmp_path, capsys):
    run = write_run(tmp_path / "run", done=True, edit=_set("feature_config", "hop_length", 0))
    assert main(["-q", "embed", "--run", str(run), str(world["music"]), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "feature_config.hop_length" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def _negative_variance(payload):
    """Finite weights whose forward pass is NaN: a BatchNorm running variance below zero."""
    state = dict(payload["model"])
    state["features.0.2.running_var"] = torch.full_like(state["features.0.2.running_var"], -1.0)
    payload["model"] = state


def test_a_non_finite_embedding_is_an_error_naming_the_file(world, tmp_path, capsys):
    run = write_run(tmp_path / "run", done=True, edit=_negative_variance)
    song = world["songs"][0]
    assert main(["-q", "embed", "--run", str(run), str(song), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(song) in err and "NaN or infinite" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.npz"))
    with pytest.raises(NonFiniteEmbeddingError, match=r"track 't000'"):
        from musicrep.inference.store_embeddings import embed_store

        embed_store(musicrep.load(run), store=world["store"], track_ids=["t000"], cache=False)


# --------------------------------------------------------------------------- 5. index ids and manifest


def test_every_catalog_id_is_indexed_or_skipped_by_name(world, tmp_path, capsys):
    songs = world["songs"]
    catalog = tmp_path / "catalog.csv"
    rows = [("t0", songs[0]), ("t1", songs[1]), ("t2", songs[2]), ("t0-again", songs[0]),
            ("gone", tmp_path / "missing.wav")]
    catalog.write_text("track_id,path\n" + "".join(f"{t},{p}\n" for t, p in rows))
    out = tmp_path / "idx"
    assert main(["-q", "index", "build", "--run", str(world["run_a"]), "--catalog", str(catalog), "-o", str(out)]) == 0
    assert f"{out}: 4 tracks indexed, 1 skipped (see skipped.csv)" in capsys.readouterr().out
    index = SearchIndex.load(out)
    assert sorted(index.track_ids) == ["t0", "t0-again", "t1", "t2"]
    np.testing.assert_array_equal(index.vector("t0"), index.vector("t0-again"))  # one file, one vector
    skipped = list(csv.DictReader((out / "skipped.csv").open(encoding="utf-8")))
    assert [r["track_id"] for r in skipped] == ["gone"] and "missing.wav" in skipped[0]["reason"]


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m["concepts"]["artist"].update(kind="hnsw", params={"efSearch": 16}), "says kind 'hnsw'"),
    (lambda m: m["concepts"]["artist"].update(kind="flat"), "kind 'flat'"),
    (lambda m: m["concepts"]["artist"].update(dim=7), "dim 7"),
    (lambda m: m.update(n_tracks=50), "n_tracks is 50"),
], ids=["hnsw over a flat index", "unknown kind", "wrong dim", "wrong count"])
def test_a_manifest_that_disagrees_with_its_files_is_a_named_error(tmp_path, capsys, edit, needle):
    out = tmp_path / "idx"
    rng = np.random.default_rng(0)
    build_index(out=out, rows=[{"track_id": f"t{i}"} for i in range(20)],
                vectors={"artist": rng.standard_normal((20, 8)).astype(np.float32)})
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SearchIndexError, match=needle) as info:
        SearchIndex.load(out)
    assert str(out / "manifest.json") in str(info.value) and "--overwrite" in str(info.value)
    assert main(["-q", "search", str(out), "--query", "t1"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# --------------------------------------------------------------------------- 6. symlink loops


@pytest.mark.parametrize("to", ["-o", "--table"])
def test_a_symlink_loop_is_skipped_by_name_and_the_rest_embedded(world, tmp_path, capsys, to):
    music = tmp_path / "music"
    good = write_tone(music / "good.wav", seconds=4.0)
    os.symlink("loop-b.wav", music / "loop-a.wav")
    os.symlink("loop-a.wav", music / "loop-b.wav")
    os.symlink(".", music / "again")  # a folder loop: not followed
    out = tmp_path / ("out" if to == "-o" else "vectors.csv")
    assert main(["-q", "embed", "--run", str(world["run_a"]), str(music), to, str(out)]) == 0
    captured = capsys.readouterr()
    assert "embedded 1 file(s)" in captured.out and "2 unusable" in captured.out
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 2 and all("loop-" in line for line in skipped)
    if to == "-o":
        assert [p.name for p in out.rglob("*.npz")] == ["good.wav.npz"]
    else:
        assert [r["path"] for r in csv.DictReader(out.open(encoding="utf-8"))] == [str(good.resolve())]
