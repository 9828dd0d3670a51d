"""Nothing musicrep reads can run code, and damaged or invalid inputs are named, not half-used.

Checkpoints are read with ``torch.load(weights_only=True)`` and a digest; store
parts with ``np.load(allow_pickle=False)``; settings are validated key by key.
"""

from __future__ import annotations

import dataclasses
import json
import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import musicrep
from musicrep.data.catalog import Catalog, Track
from musicrep.training.checkpoint import load_encoder, read_checkpoint, save_checkpoint
from musicrep.cli import main
from musicrep.config import FeatureConfig, to_dict
from musicrep.errors import CheckpointError, StoreError
from musicrep.training.model import Encoder

SRC = Path(musicrep.__file__).parent


class Evil:
    """Unpickling this makes a directory: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _checkpoint(path: Path, **extra) -> Path:
    torch.manual_seed(0)
    enc = Encoder(width=8)
    payload = {"model": enc.state_dict(), "model_config": dataclasses.asdict(enc.model_config),
               "feature_config": to_dict(FeatureConfig()), "step": 3, "epoch": 1, "best_metric": 0.5,
               "config": {"width": 8}, "concept": "artist", **extra}
    return save_checkpoint(payload, path=path)


def test_a_checkpoint_with_a_pickled_object_is_refused_not_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    good = torch.load(_checkpoint(tmp_path / "run" / "best.pt"), weights_only=True)
    evil = tmp_path / "evil" / "best.pt"
    evil.parent.mkdir()
    torch.save({**good, "extra": Evil(marker)}, evil)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(evil)
    assert str(evil) in str(info.value)
    with pytest.raises(CheckpointError):
        load_encoder(evil.parent)
    with pytest.raises(CheckpointError):
        musicrep.load(evil.parent)
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    assert main(["-q", "embed", "--run", str(evil.parent), str(audio), "-o", str(tmp_path / "out")]) == 2
    assert str(evil) in capsys.readouterr().err
    assert not marker.exists()
    # the file really is hostile: a plain unpickling load would have run it
    torch.load(evil, weights_only=False)
    assert marker.is_dir()


def _tensor_offset(blob: bytes, payload: dict) -> int:
    """Offset of a weight tensor's raw bytes inside a saved checkpoint (torch stores them uncompressed)."""
    for value in payload["model"].values():
        raw = value.numpy().tobytes()
        if value.numel() >= 64 and raw.count(raw[:8]) == 1 and blob.count(raw) == 1:
            return blob.index(raw) + len(raw) // 2
    raise AssertionError("no tensor found in the file")


@pytest.mark.parametrize("damage", ["empty", "cut 10%", "cut 50%", "cut 95%", "last byte gone",
                                    "weight byte flipped", "garbage"])
def test_damaged_checkpoint_is_a_named_error(tmp_path, damage, capsys):
    path = _checkpoint(tmp_path / "run" / "best.pt")
    blob = path.read_bytes()
    if damage == "empty":
        new = b""
    elif damage.startswith("cut"):
        new = blob[: len(blob) * int(damage.split()[1][:-1]) // 100]
    elif damage == "last byte gone":
        new = blob[:-1]
    elif damage == "garbage":
        new = os.urandom(len(blob))
    else:
        i = _tensor_offset(blob, torch.load(path, weights_only=True))
        new = blob[:i] + bytes([blob[i] ^ 0x10]) + blob[i + 1:]
    path.write_bytes(new)
    with pytest.raises(CheckpointError) as info:
        load_encoder(path.parent)
    assert str(path) in str(info.value)
    if damage == "weight byte flipped":
        assert "digest" in str(info.value)
    assert main(["-q", "evaluate", "holdout", str(path.parent), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_a_store_part_holding_objects_is_refused_not_run(tmp_path):
    import soundfile as sf

    from musicrep.config import FeatureConfig
    from musicrep.data.prepare import _part_name, prepare

    sr = 22050
    y = (0.3 * np.sin(np.arange(4 * sr) * 0.05)).astype(np.float32)
    paths = [tmp_path / f"{i}.wav" for i in range(3)]
    for p in paths:
        sf.write(p, y, sr)
    cat = Catalog([Track(f"t{i}", str(p)) for i, p in enumerate(paths)])
    prepare(cat[:2], out_dir=tmp_path / "s", workers=1)
    # an interrupted run's part for t2, replaced by a pickle that would make a directory
    marker = tmp_path / "pwned"
    parts = tmp_path / "s" / "parts"
    parts.mkdir()
    name = _part_name(cat[2], FeatureConfig().hash())
    part = parts / f"{name}.npy"
    np.save(part, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    (parts / f"{name}.json").write_text(json.dumps({"track_id": "t2", "path": str(paths[2]), "n_frames": 1}))
    with pytest.raises(StoreError) as info:
        prepare(cat, out_dir=tmp_path / "s", workers=1)
    assert str(part) in str(info.value) and "delete it" in str(info.value)
    assert not marker.exists()
    part.unlink()  # the message's advice works
    assert prepare(cat, out_dir=tmp_path / "s", workers=1).stored == 3


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr, {k.arg: k.value for k in node.keywords}, node.lineno


def test_no_pickle_for_user_facing_files():
    """No pickle/dill/joblib/marshal/shelve imports; every torch.load is weights_only=True, every np.load
    allow_pickle=False, every yaml load safe."""
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    problems = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(SRC)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"):
                    problems.append(f"{where}:{node.lineno}: imports {name}")
        for obj, attr, kw, line in _calls(tree):
            def const(k, kw=kw):
                return isinstance(kw.get(k), ast.Constant) and kw[k].value

            if obj == "torch" and attr == "load" and const("weights_only") is not True:
                problems.append(f"{where}:{line}: torch.load without weights_only=True")
            if obj in ("np", "numpy") and attr == "load" and ("allow_pickle" not in kw or const("allow_pickle") is not False):
                problems.append(f"{where}:{line}: np.load without allow_pickle=False")
            if obj == "yaml" and attr in ("load", "unsafe_load", "full_load", "load_all"):
                problems.append(f"{where}:{line}: yaml.{attr} (use yaml.safe_load)")
    assert not problems, "\n".join(problems)


TRAIN_BAD = [
    ("epochs=-1", "epochs=-1 is out of range"),
    ("epochs=2.5", "epochs must be an integer"),
    ("lr=0", "lr=0.0 is out of range"),
    ("lr=fast", "lr must be a number"),
    ("momentum=1.5", "momentum=1.5 is out of range"),
    ("optimizer=rmsprop", "optimizer='rmsprop' is not one of"),
    ("amp=perhaps", "amp must be true or false"),
    ("epoch=3", "unknown setting epoch"),
    ("negatives=-1", "negatives=-1 is out of range"),
    ("negatives=0", "negatives=0 leaves an anchor nothing to beat"),
    ("batch_size=[4, 8]", "batch_size must be an integer"),
]


@pytest.mark.parametrize("override, message", TRAIN_BAD)
def test_train_cli_rejects_bad_settings_with_the_key(tmp_path, capsys, override, message):
    rc = main(["-q", "train", "--store", str(tmp_path / "no store"), "-o", str(tmp_path / "run"), "--set", override])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, message", [
    ("epochs: 3\nwidht: 16\n", "unknown setting widht"),
    ("epochs: three\n", "epochs must be an integer"),
    ("patience: 0\n", "patience=0 is out of range"),
    ("- width\n", "must be a mapping"),
    ("width: [16\n", "not valid YAML"),
    ("concept: path\n", "concept 'path'"),
])
def test_train_config_file_is_validated(tmp_path, capsys, text, message):
    cfg = tmp_path / "my settings.yaml"
    cfg.write_text(text)
    rc = main(["-q", "train", "--store", str(tmp_path / "s"), "-o", str(tmp_path / "run"), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err


@pytest.mark.parametrize("override, message", [
    ("n_mels=0", "n_mels=0 is out of range"),
    ("hop_length=0", "hop_length=0 is out of range"),
    ("sample_rate=-5", "sample_rate=-5 is out of range"),
    ("fmax=-1", "fmax=-1.0 is out of range"),
    ("segment_frames=0", "segment_frames=0 is out of range"),
    ("n_fft=abc", "n_fft must be an integer"),
    ("n_mel=64", "unknown setting n_mel"),
])
def test_prepare_cli_rejects_bad_feature_settings_before_decoding(tmp_path, capsys, override, message):
    cat = tmp_path / "c.csv"
    cat.write_text("track_id,path\nt,t.wav\n")
    rc = main(["-q", "prepare", str(cat), "-o", str(tmp_path / "s"), "--set", override])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    import soundfile as sf

    from musicrep.data.prepare import prepare

    root = tmp_path_factory.mktemp("small")
    y = (0.3 * np.sin(np.arange(4 * 22050) * 0.05)).astype(np.float32)
    tracks = []
    for i in range(2):
        sf.write(root / f"{i}.wav", y * (i + 1) / 2, 22050)
        tracks.append(Track(f"t{i}", str(root / f"{i}.wav"), artist=f"A{i}"))
    return prepare(Catalog(tracks), out_dir=root / "store", workers=1).path


@pytest.mark.parametrize("damage, needle", [
    ("frames.f16 cut", "frames.f16 has"),
    ("offset not a number", "index.csv is malformed"),
    ("offset past the end", "points outside frames.f16"),
    ("index.csv gone", "index.csv is missing"),
    ("index.csv without offsets", "index.csv is malformed"),
    ("index.csv binary", "index.csv is malformed"),
    ("store.json garbage", "store.json is unreadable"),
    ("store.json wrong type", "n_mels must be an integer"),
    ("DONE gone", "incomplete"),
])
def test_damaged_store_is_a_named_error(small_store, tmp_path, damage, needle, capsys):
    import shutil

    from musicrep.data.store import FeatureStore

    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    index, meta = store / "index.csv", store / "store.json"
    edit = {
        "frames.f16 cut": lambda: (store / "frames.f16").write_bytes((store / "frames.f16").read_bytes()[:-7]),
        "offset not a number": lambda: index.write_text(index.read_text().replace(",0,", ",zero,", 1)),
        "offset past the end": lambda: index.write_text(index.read_text().replace(",0,", ",100000,", 1)),
        "index.csv gone": index.unlink,
        "index.csv without offsets": lambda: index.write_text("track_id,path\nt0,0.wav\n"),
        "index.csv binary": lambda: index.write_bytes(b"\xff\xfe\x00garbage"),
        "store.json garbage": lambda: meta.write_text("{garbage"),
        "store.json wrong type": lambda: meta.write_text(meta.read_text().replace('"n_mels": 128', '"n_mels": "x"', 1)),
        "DONE gone": (store / "DONE").unlink,
    }[damage]
    FeatureStore(store)  # whole before the damage
    edit()
    with pytest.raises(StoreError) as info:
        FeatureStore(store)
    assert str(store) in str(info.value) and needle in str(info.value)
    assert main(["-q", "train", "--store", str(store), "-o", str(tmp_path / "run"), "--set", "width=8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err


@pytest.mark.parametrize("damage", ["tracks.csv gone", "tracks.csv binary", "manifest not a mapping",
                                    "manifest without concepts", "faiss file cut"])
def test_damaged_search_index_is_a_named_error(tmp_path, damage, capsys):
    from musicrep.inference.index import SearchIndex, SearchIndexError
    from musicrep.inference.index_build import build_index

    rng = np.random.default_rng(0)
    out = tmp_path / "idx"
    build_index(out=out, rows=[{"track_id": f"t{i}", "path": f"{i}.wav"} for i in range(20)],
                vectors={"artist": rng.standard_normal((20, 8)).astype(np.float32)})
    {
        "tracks.csv gone": (out / "tracks.csv").unlink,
        "tracks.csv binary": lambda: (out / "tracks.csv").write_bytes(b"\xff\xfe\x00junk"),
        "manifest not a mapping": lambda: (out / "manifest.json").write_text("[1, 2]"),
        "manifest without concepts": lambda: (out / "manifest.json").write_text('{"version": 1}'),
        "faiss file cut": lambda: (out / "artist.faiss").write_bytes((out / "artist.faiss").read_bytes()[:50]),
    }[damage]()
    with pytest.raises(SearchIndexError) as info:
        SearchIndex.load(out)
    assert str(out) in str(info.value)
    assert main(["-q", "search", str(out), "--query", "t1"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_the_same_checkpoint_gives_the_same_bytes(tmp_path):
    # torch.save names the archive's inner folder after the file it writes, and the
    # atomic write's temp file has a random name: the shipped model's checksum must
    # not change when make main packages the same weights again
    payload = {"model": {"w": torch.arange(6.0)}, "concept": "joint"}
    a, b = save_checkpoint(payload, path=tmp_path / "a.pt"), save_checkpoint(payload, path=tmp_path / "b.pt")
    assert a.read_bytes() == b.read_bytes()
    assert torch.equal(read_checkpoint(a)["model"]["w"], torch.arange(6.0))
