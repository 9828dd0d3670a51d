"""Every entry point fed the messy inputs a real collection holds.

Each bad input must end as a named error (a MusicrepError subclass whose
message names the file or value) or a reported skip, and the rest of the job
must finish. :data:`BAD_INPUT_KINDS` is the list the README cites; the last
test checks that every kind is exercised by some test here.

One small library (``zoo``) holds good synthetic songs, the unusual-but-valid
files (8 kHz, 192 kHz, 6 channels, odd paths and tags) and the broken ones; it
goes through from_folder -> prepare -> train -> evaluate / embed / index.
"""

from __future__ import annotations

import csv
import os
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data.audio import stream_audio
from musicrep.data.catalog import Catalog, Track, read_csv
from musicrep.cli import main
from musicrep.config import FeatureConfig
from musicrep.data.datasets import from_csv, from_folder
from musicrep.errors import (
    AudioError,
    CatalogError,
    CheckpointError,
    EmptyAudioError,
    InvalidAudioError,
    SilentAudioError,
    SplitError,
    StoreError,
    TooShortAudioError,
    UnreadableAudioError,
)
from musicrep.data.features import log_mel_stream, n_frames_for
from musicrep.data.prepare import prepare
from musicrep.data.store import FeatureStore, load_errors
from musicrep.testing import synth_collection, tag_file

BAD_INPUT_KINDS: tuple[str, ...] = (
    "empty file",
    "zero-length audio stream",
    "header-only WAV",
    "truncated MP3",
    "truncated OGG",
    "truncated FLAC",
    "text file named .mp3",
    "directory named .wav",
    "broken symlink",
    "file that vanishes mid-run",
    "unreadable-permission file",
    "silence",
    "NaN samples",
    "inf samples",
    "1-sample file",
    "shorter than one 3-s segment",
    "3-hour file",
    "8 kHz audio",
    "192 kHz audio",
    "multichannel audio",
    "missing tags",
    "empty tags",
    "non-UTF-8 tag text",
    "right-to-left tag text",
    "path with spaces and non-ASCII characters",
    "duplicate track ids",
    "catalog CSV with missing columns",
    "catalog CSV with extra commas",
    "artist with one song",
    "concept with one class",
)

SR = 22050
HAS_FFMPEG = __import__("shutil").which("ffmpeg") is not None

#: broken audio in the zoo: kind -> (file name under BAD, the AudioError the decoder must raise;
#: AudioError itself where the decoder may stop with any named error (truncated files))
BROKEN: dict[str, tuple[str, type[AudioError]]] = {
    "empty file": ("01 empty.flac", EmptyAudioError),
    "zero-length audio stream": ("02 zero stream.ogg", EmptyAudioError),
    "header-only WAV": ("03 header only.wav", EmptyAudioError),
    "truncated MP3": ("04 truncated.mp3", AudioError),
    "truncated OGG": ("05 truncated.ogg", AudioError),
    "truncated FLAC": ("06 truncated.flac", AudioError),
    "text file named .mp3": ("07 text.mp3", UnreadableAudioError),
    "directory named .wav": ("08 folder.wav", UnreadableAudioError),
    "broken symlink": ("09 dangling.wav", UnreadableAudioError),
    "file that vanishes mid-run": ("10 vanishing.flac", UnreadableAudioError),
    "silence": ("11 silence.flac", SilentAudioError),
    "NaN samples": ("12 nan.wav", InvalidAudioError),
    "inf samples": ("13 inf.wav", InvalidAudioError),
    "1-sample file": ("14 one sample.wav", TooShortAudioError),
    "shorter than one 3-s segment": ("15 two seconds.flac", TooShortAudioError),
}
#: unusual but valid audio: kind -> path relative to the zoo root; each must be stored
ODD: dict[str, str] = {
    "8 kHz audio": "Rates/Odd/01 eight k.wav",
    "192 kHz audio": "Rates/Odd/02 high rate.flac",
    "multichannel audio": "Rates/Odd/03 six channels.wav",
    "missing tags": "Layout Artist/Layout Album/01 No Tags.wav",
    "empty tags": "Layout Artist/Layout Album/02 Empty Tags.flac",
    "non-UTF-8 tag text": "Tagged/x/01 bad bytes.flac",
    "right-to-left tag text": "Tagged/x/02 rtl.flac",
    "path with spaces and non-ASCII characters": "Ärtist ünï/Альбом 1/01 ソング with  spaces.flac",
    "artist with one song": "Solo Artist/Only Album/01 Lonely.flac",
}
COVERED: set[str] = set(BROKEN) | set(ODD)  # the other kinds add themselves below


def covers(*kinds: str):
    """Mark the kinds a test exercises (checked against BAD_INPUT_KINDS at the end)."""
    unknown = set(kinds) - set(BAD_INPUT_KINDS)
    assert not unknown, unknown
    COVERED.update(kinds)
    return lambda fn: fn


def tone(seconds: float, sr: int = SR, *, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    y = (0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)
    return np.repeat(y[:, None], channels, axis=1) * np.linspace(1.0, 0.5, channels, dtype=np.float32) if channels > 1 else y


def _write(path: Path, y, sr: int = SR, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, **kw)
    return path


def _cut(path: Path, src: np.ndarray, fraction: float = 0.4, **kw) -> None:
    _write(path, src, **kw)
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * fraction)])


def _build_zoo(root: Path) -> dict:
    lib = root / "lib"
    synth_collection(lib, n_artists=3, albums_per_artist=2, songs_per_album=4, seconds=6.5, seed=5)
    (lib / "catalog.csv").unlink()  # the zoo's catalog comes from from_folder
    odd = {k: lib / rel for k, rel in ODD.items()}
    _write(odd["8 kHz audio"], tone(4.0, 8000), 8000)
    _write(odd["192 kHz audio"], tone(3.5, 192000, freq=1000.0), 192000, subtype="PCM_24")
    _write(odd["multichannel audio"], tone(4.0, 44100, channels=6), 44100)
    _write(odd["missing tags"], tone(4.0, freq=330.0))
    _write(odd["empty tags"], tone(4.0, freq=550.0))
    tag_file(odd["empty tags"], artist="", album="", title="")
    _write(odd["non-UTF-8 tag text"], tone(4.0, freq=660.0))
    tag_file(odd["non-UTF-8 tag text"], artist="ZZZZ", title="bad bytes")
    f = odd["non-UTF-8 tag text"]
    f.write_bytes(f.read_bytes().replace(b"ZZZZ", b"\xff\xfe\xc3("))  # invalid UTF-8 in a Vorbis comment
    _write(odd["right-to-left tag text"], tone(4.0, freq=770.0))
    tag_file(odd["right-to-left tag text"], artist="فيروز", album="שבע שנים", title="يا طير")
    _write(odd["path with spaces and non-ASCII characters"], tone(4.0, freq=880.0))
    _write(odd["artist with one song"], tone(4.0, freq=990.0))

    bad_dir = lib / "Bad Stuff" / "Bad Album"
    bad_dir.mkdir(parents=True)
    bad = {k: bad_dir / name for k, (name, _) in BROKEN.items()}
    bad["empty file"].write_bytes(b"")
    _write(bad["zero-length audio stream"], np.zeros(0, np.float32), subtype="VORBIS")
    full_wav = _write(root / "full.wav", tone(8.0))
    bad["header-only WAV"].write_bytes(full_wav.read_bytes()[:44])  # the header promises 8 s; no data
    six = tone(6.0)  # cut at 40%: whatever decodes is < 3 s, so every outcome is a named error
    _cut(bad["truncated FLAC"], six)
    _cut(bad["truncated OGG"], six, subtype="VORBIS")
    _cut(bad["truncated MP3"], six, format="MP3")
    bad["text file named .mp3"].write_text("ID3 this is not audio\n" * 50)
    bad["directory named .wav"].mkdir()
    bad["broken symlink"].symlink_to(bad_dir / "deleted long ago.wav")
    _write(bad["file that vanishes mid-run"], tone(4.0))
    _write(bad["silence"], np.zeros(4 * SR, np.float32))
    nan = tone(4.0)
    nan[SR] = np.nan
    _write(bad["NaN samples"], nan, subtype="FLOAT")
    inf = tone(4.0)
    inf[2 * SR] = np.inf
    _write(bad["inf samples"], inf, subtype="FLOAT")
    _write(bad["1-sample file"], np.array([0.5], np.float32))
    _write(bad["shorter than one 3-s segment"], tone(2.0))
    return {"lib": lib, "odd": odd, "bad": bad}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The library, its folder catalog, the prepare catalog (every bad file listed) and the store."""
    root = tmp_path_factory.mktemp("zoo")
    z = _build_zoo(root)
    skipped: list = []
    catalog = from_folder(z["lib"], skipped=skipped)
    # prepare is fed every bad file, also those the folder builder already left out
    listed = {Path(t.path) for t in catalog}
    extra = [Track(f"bad-{i:02d}", str(p), artist="Bad Stuff") for i, p in enumerate(z["bad"].values()) if p not in listed]
    full = Catalog(list(catalog) + extra, source="zoo")
    z["bad"]["file that vanishes mid-run"].unlink()  # listed in both catalogs, gone before prepare reaches it
    result = prepare(full, out_dir=root / "store", workers=2)
    z.update(root=root, skipped=skipped, catalog=catalog, full=full, result=result, store=FeatureStore(root / "store"))
    z["id_of"] = {Path(t.path): t.track_id for t in full}
    return z


@pytest.fixture(scope="module")
def run(zoo):
    """A tiny joint run trained on the zoo store."""
    from musicrep.config import load_config
    from musicrep.training.settings import TrainConfig
    from musicrep.training.train import train

    config = load_config(TrainConfig, path=None, overrides=[
        "concept=joint", "width=8", "epochs=1", "steps_per_epoch=2", "batch_size=4", "valid_batches=1",
        "negatives=2", "songs_per_artist=4", "artist_valid=1", "artist_test=1", "songs_per_album=4",
        "album_valid=1", "album_test=1", "tensorboard=false", "threads=1",
    ])
    return train(zoo["store"].path, out_dir=zoo["root"] / "run", config=config)


# --------------------------------------------------------------------------- catalog builders


def test_folder_builder_reports_or_keeps_each_file(zoo):
    skipped = {Path(s.item): s for s in zoo["skipped"]}
    listed = {Path(t.path) for t in zoo["catalog"]}
    for kind, path in zoo["bad"].items():
        if kind == "directory named .wav":  # searched as a folder, reported at INFO
            assert skipped[path].reason == "folder named like an audio file"
            continue
        assert (path in skipped) != (path in listed), kind  # exactly one of: reported skip, or in the catalog
    assert skipped[zoo["bad"]["empty file"]].reason == "empty file"
    assert skipped[zoo["bad"]["broken symlink"]].reason == "broken link"
    assert skipped[zoo["bad"]["text file named .mp3"]].reason == "cannot read audio"
    assert all(p in listed for p in zoo["odd"].values())
    by_path = {Path(t.path): t for t in zoo["catalog"]}
    # tags missing or empty: the Artist/Album/NN Title layout fills in
    for kind in ("missing tags", "empty tags"):
        t = by_path[zoo["odd"][kind]]
        assert (t.artist, t.album) == ("Layout Artist", "Layout Album") and t.title in ("No Tags", "Empty Tags")
    rtl = by_path[zoo["odd"]["right-to-left tag text"]]
    assert (rtl.artist, rtl.album, rtl.title) == ("فيروز", "שבע שנים", "يا طير")
    mangled = by_path[zoo["odd"]["non-UTF-8 tag text"]]
    assert isinstance(mangled.artist, str) and mangled.artist.endswith("(") and mangled.title == "bad bytes"
    odd_path = by_path[zoo["odd"]["path with spaces and non-ASCII characters"]]
    assert odd_path.artist == "Ärtist ünï" and odd_path.track_id == "ärtist-ünï-альбом-1-01-ソング-with-spaces"


def test_catalog_round_trips_odd_text_through_csv(zoo, tmp_path):
    out = zoo["catalog"].write_csv(tmp_path / "cat.csv")
    back = from_csv(out)  # the vanished file is reported and left out, nothing else
    gone = zoo["bad"]["file that vanishes mid-run"]
    assert [t.track_id for t in back] == [t.track_id for t in zoo["catalog"] if Path(t.path) != gone]
    for a, b in zip([t for t in zoo["catalog"] if Path(t.path) != gone], back):
        assert (a.path, a.artist, a.album, a.title) == (b.path, b.artist, b.album, b.title)


@covers("duplicate track ids", "catalog CSV with missing columns", "catalog CSV with extra commas")
@pytest.mark.parametrize("text, needle", [
    ("track_id,path\nx,a.wav\ny,b.wav\nx,c.wav\n", "duplicate track_id 'x'"),
    ("id,file,artist\n1,a.wav,A\n", "missing column(s) track_id, path"),
    ("track_id,path,artist\nx,a.wav,Mötley, Crüe\n", ":2: 4 fields but the header has 3"),
])
def test_malformed_catalog_csv_is_a_named_error_everywhere(tmp_path, capsys, text, needle):
    bad = tmp_path / "my catalog.csv"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        from_csv(bad, check_files=False)
    assert str(bad) in str(info.value) and needle in str(info.value)
    # the CLI verbs that read a catalog: exit 2 with the same message, no traceback
    for argv in (["catalog", "csv", str(bad), "-o", str(tmp_path / "o.csv")], ["prepare", str(bad), "-o", str(tmp_path / "s")]):
        assert main(["-q", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert not (tmp_path / "s" / "DONE").exists() and not (tmp_path / "o.csv").exists()
    with pytest.raises(CatalogError, match="duplicate track_id 'a'"):
        Catalog([Track("a", "1.wav"), Track("a", "2.wav")])


# --------------------------------------------------------------------------- prepare


def test_prepare_reports_each_bad_file_and_stores_the_rest(zoo):
    errors = {e["track_id"]: e for e in load_errors(zoo["store"].path)}
    assert {e["track_id"] for e in zoo["result"].errors} == set(errors)
    for kind, (name, kind_error) in BROKEN.items():
        tid = zoo["id_of"][zoo["bad"][kind]]
        assert tid in errors, kind
        assert errors[tid]["path"] == str(zoo["bad"][kind])
        if kind_error is AudioError:  # truncated: any of the audio reasons, never "unexpected error"
            assert errors[tid]["reason"] in {c.reason for c in AudioError.__subclasses__()}, (kind, errors[tid])
        else:
            assert errors[tid]["reason"] == kind_error.reason, (kind, errors[tid])
    store = zoo["store"]
    assert set(store.track_ids) == {t.track_id for t in zoo["full"]} - set(errors)
    assert len(store) == 24 + len(ODD)
    for kind, seconds in (("8 kHz audio", 4.0), ("192 kHz audio", 3.5), ("multichannel audio", 4.0)):
        n = store.n_frames(zoo["id_of"][zoo["odd"][kind]])
        assert abs(n - n_frames_for(int(seconds * SR))) <= 1, kind
    rtl = store.catalog.by_id(zoo["id_of"][zoo["odd"]["right-to-left tag text"]])
    assert rtl.artist == "فيروز"
    # a rerun retries nothing and changes nothing
    again = prepare(zoo["full"], out_dir=store.path, workers=1)
    assert again.new == 0 and again.stored == len(store)


def test_prepare_nothing_usable_names_errors_csv(zoo, tmp_path):
    only_bad = Catalog([Track("x", str(zoo["bad"]["silence"])), Track("y", str(zoo["bad"]["text file named .mp3"]))])
    with pytest.raises(StoreError, match="errors.csv"):
        prepare(only_bad, out_dir=tmp_path / "s", workers=1)
    assert {e["reason"] for e in load_errors(tmp_path / "s")} == {"audio is silent", "cannot decode audio"}


@covers("3-hour file")
@pytest.mark.slow
@pytest.mark.skipif(not HAS_FFMPEG, reason="needs ffmpeg to write the 3-hour FLAC")
def test_three_hour_file_streams_in_bounded_memory(tmp_path):
    # 3 h of a DC level at 8 kHz: ~2 MB of FLAC, 86.4 M samples (346 MB as float32).
    path = tmp_path / "three hours.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "aevalsrc=0.01:s=8000:d=10800", "-c:a", "flac",
                    str(path)], check=True)
    # resampled (soxr stream) to 11025 Hz; a coarse hop keeps the FFT work small, the memory question is the same
    config = FeatureConfig(sample_rate=11025, n_fft=2048, hop_length=2048, n_mels=32)
    tracemalloc.start()
    try:
        frames = 0
        for chunk in log_mel_stream(stream_audio(path, sr=11025), config=config):
            assert chunk.shape[1] == 32 and np.isfinite(chunk).all()
            frames += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert abs(frames - n_frames_for(3 * 3600 * 11025, config=config)) <= 2  # all 3 hours came through
    assert peak < 32 * 2**20, f"peak traced memory {peak / 2**20:.0f} MB while streaming 3 h"


# --------------------------------------------------------------------------- train and evaluate


@covers("artist with one song")
def test_train_and_evaluate_finish_on_the_zoo(zoo, run):
    from musicrep.evaluation.holdout import holdout_runs
    from musicrep.evaluation.trials import build_trials, load_split

    assert (run / "DONE").is_file()
    split = load_split(run)
    solo = zoo["id_of"][zoo["odd"]["artist with one song"]]
    labels = {label for s in split.values() for _t, label, _p in s.rows}
    assert "Solo Artist" not in labels and "Bad Stuff" not in labels
    assert {t for s in split.values() for t in s.labels()} <= set(zoo["store"].track_ids)
    assert solo not in {t for s in split.values() for t in s.labels()}
    result = holdout_runs([run], store=zoo["store"].path, n_trials=12, n_negatives=2, seed=1)
    assert set(result.concepts) == {"artist", "album", "track"}
    assert all(0.0 <= a <= 1.0 for a in result.accuracy["joint"].values())
    trials = build_trials(store=zoo["store"], split=split, concept="artist", n_trials=12, n_negatives=2)
    used = {tid for tr in trials for tid, _ in (tr.anchor, tr.positive, *tr.negatives)}
    assert used <= set(zoo["store"].track_ids)


def test_evaluate_bad_arguments_are_named_errors(zoo, run, tmp_path, capsys):
    from musicrep.evaluation.holdout import holdout_runs

    with pytest.raises(StoreError, match="nowhere"):
        holdout_runs([run], store=tmp_path / "nowhere")
    (tmp_path / "empty run").mkdir()
    with pytest.raises(CheckpointError, match="empty run"):
        holdout_runs([tmp_path / "empty run"], store=zoo["store"].path)
    assert main(["-q", "evaluate", "holdout", str(tmp_path / "empty run"), "--store", str(zoo["store"].path)]) == 2
    assert "error: " in capsys.readouterr().err


@covers("concept with one class")
@pytest.mark.parametrize("concept, needle", [("artist", "artist split needs 2 artists"), ("album", "album split needs 2 albums")])
def test_one_class_concept_is_a_split_error(tmp_path, capsys, concept, needle):
    # one artist with one album of 6 songs: no second class to tell apart
    cat = Catalog([Track(f"t{i}", "x.wav", artist="Only One", album="Only Album") for i in range(6)])
    from musicrep.data.splits import album_split, artist_split

    split_fn = artist_split if concept == "artist" else album_split
    with pytest.raises(SplitError) as info:
        split_fn(catalog=cat, songs_per_artist=6) if concept == "artist" else split_fn(catalog=cat, songs_per_album=4)
    assert needle in str(info.value) and "only 1 of 1" in str(info.value)
    # through train on a real one-artist store, and its CLI
    lib = synth_collection(tmp_path / "one", n_artists=1, albums_per_artist=1, songs_per_album=6, seconds=3.5)
    store = prepare(read_csv(lib), out_dir=tmp_path / "store", workers=1).path
    argv = ["-q", "train", "--store", str(store), "--concept", concept, "-o", str(tmp_path / "run"), "--set", "width=8",
            "--set", "songs_per_artist=6", "--set", "songs_per_album=4", "--set", "tensorboard=false"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err
    assert not (tmp_path / "run" / "last.pt").exists()


# --------------------------------------------------------------------------- embed


@pytest.fixture(scope="module")
def model(run):
    from musicrep.inference.embed import load

    return load(run)


def test_embed_files_reports_each_bad_file_and_embeds_the_rest(zoo, model, tmp_path):
    from musicrep.inference.embed_job import embed_to_files

    bad_folder = zoo["bad"]["empty file"].parent
    odd = list(zoo["odd"].values())
    report = embed_to_files(model=model, inputs=[bad_folder, *odd], out=tmp_path / "out", workers=2)
    failed = {Path(e.path): e for e in report.errors}
    expected = {p for k, p in zoo["bad"].items() if k not in ("directory named .wav", "file that vanishes mid-run")}
    assert set(failed) == expected  # the broken link is reported too, not silently passed over
    for kind, (_name, kind_error) in BROKEN.items():
        path = zoo["bad"][kind]
        if path in failed:
            assert isinstance(failed[path], kind_error) and str(path) in str(failed[path]), kind
    assert sorted(report.embedded) == sorted(odd)
    outs = sorted((tmp_path / "out").rglob("*"))
    assert sorted(p.name for p in outs if p.is_file()) == sorted(p.name + ".npz" for p in odd)
    with np.load(tmp_path / "out" / (zoo["odd"]["192 kHz audio"].name + ".npz"), allow_pickle=False) as z:
        assert z["vector"].shape == (model.dim,) and np.isfinite(z["vector"]).all()
    # named on the command line: a broken link is reported and the job goes on
    link, good = zoo["bad"]["broken symlink"], zoo["odd"]["8 kHz audio"]
    report = embed_to_files(model=model, inputs=[link, good], out=tmp_path / "out2", workers=0)
    assert report.embedded == [good] and [e.path for e in report.errors] == [str(link)]
    assert "broken symbolic link" in str(report.errors[0])


@covers("NaN samples", "inf samples", "8 kHz audio", "192 kHz audio", "multichannel audio")
def test_embed_arrays(model):
    for bad in (np.nan, np.inf, -np.inf):
        y = tone(4.0)
        y[100] = bad
        with pytest.raises(InvalidAudioError, match="<array>"):
            model.embed(y, SR)
    six = tone(4.0, 44100, channels=6)
    a, b = model.embed(six, 44100).vector, model.embed(six.T.copy(), 44100).vector  # [n, ch] and [ch, n]
    np.testing.assert_allclose(a, b, atol=1e-6)
    for sr in (8000, 192000):
        assert model.embed(tone(3.5, sr), sr).vector.shape == (model.dim,)
    with pytest.raises(TooShortAudioError, match="<array>"):
        model.embed(np.array([0.5], np.float32), SR)


@covers("file that vanishes mid-run")
def test_embed_file_deleted_mid_run_is_reported_and_the_rest_finishes(zoo, model, tmp_path, monkeypatch):
    from musicrep.inference.embed import EmbeddingModel
    from musicrep.inference.embed_job import embed_to_files

    files = []
    for i in range(3):
        files.append(tmp_path / f"{i} song.wav")
        _write(files[-1], tone(4.0, freq=300.0 + 100 * i))
    real = EmbeddingModel._load_frames

    def load_and_delete_the_next(self, path):
        if path == files[0]:
            files[1].unlink()  # vanishes after the job listed it, before it is read
        return real(self, path)

    monkeypatch.setattr(EmbeddingModel, "_load_frames", load_and_delete_the_next)
    report = embed_to_files(model=model, inputs=files, out=tmp_path / "out", workers=0)
    assert report.embedded == [files[0], files[2]]
    (err,) = report.errors
    assert isinstance(err, UnreadableAudioError) and err.path == str(files[1]) and "not found" in str(err)


@covers("unreadable-permission file")
def test_unreadable_file(model, tmp_path, monkeypatch):
    from musicrep.inference.embed_job import embed_to_files

    locked = _write(tmp_path / "locked.wav", tone(4.0))
    good = _write(tmp_path / "good.wav", tone(4.0, freq=500.0))
    locked.chmod(0)
    if os.geteuid() == 0:
        # root reads any file, so chmod alone blocks nothing: make os.access answer as it does for a
        # normal user (the check audio.py makes); without the patch root would just decode the file
        real_access = os.access
        monkeypatch.setattr("musicrep.data.audio.os.access",
                            lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode, **kw))
    report = embed_to_files(model=model, inputs=[locked, good], out=tmp_path / "out", workers=0)
    assert report.embedded == [good]
    (err,) = report.errors
    assert isinstance(err, UnreadableAudioError) and "permission denied" in str(err) and str(locked) in str(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root: chmod 0 does not stop root reading, and prepare's "
                    "worker processes cannot be monkeypatched; covered in-process by test_unreadable_file")
def test_unreadable_file_in_catalog_and_prepare(tmp_path):
    locked = _write(tmp_path / "A" / "B" / "01 locked.wav", tone(4.0))
    _write(tmp_path / "A" / "B" / "02 good.wav", tone(4.0, freq=500.0))
    locked.chmod(0)
    skipped: list = []
    cat = from_folder(tmp_path, skipped=skipped)
    assert [Path(s.item) for s in skipped] == [locked] and len(cat) == 1
    result = prepare(Catalog([*cat, Track("locked", str(locked))]), out_dir=tmp_path / "s", workers=1)
    assert result.stored == 1 and [(e["track_id"], e["reason"]) for e in result.errors] == [("locked", "cannot decode audio")]


# --------------------------------------------------------------------------- search


def test_index_and_search_skip_bad_files(zoo, run, tmp_path, capsys):
    from musicrep.inference.index import SearchIndex, SearchIndexError
    from musicrep.inference.index_build import build_from_runs

    bad_ids = {e["track_id"] for e in zoo["result"].errors}
    index = build_from_runs(runs={None: run}, catalog=zoo["full"], out=tmp_path / "idx")
    assert set(index.track_ids) == {t.track_id for t in zoo["full"]} - bad_ids
    with open(tmp_path / "idx" / "skipped.csv", newline="", encoding="utf-8") as fh:
        skipped = {r["track_id"]: r for r in csv.DictReader(fh)}
    assert set(skipped) == bad_ids
    assert all(r["path"] in r["reason"] for r in skipped.values())  # each reason names its file
    index = SearchIndex.load(tmp_path / "idx")
    rtl = zoo["id_of"][zoo["odd"]["right-to-left tag text"]]
    assert len(index.query(rtl, k=3)) == 3
    for kind in ("text file named .mp3", "silence", "1-sample file", "header-only WAV"):
        with pytest.raises(AudioError) as info:
            index.query(str(zoo["bad"][kind]), k=3)
        assert str(zoo["bad"][kind]) in str(info.value), kind
    for kind in ("broken symlink", "directory named .wav"):
        with pytest.raises(SearchIndexError, match="neither a track id"):
            index.query(str(zoo["bad"][kind]), k=3)
    assert main(["-q", "search", str(tmp_path / "idx"), "--query", str(zoo["bad"]["silence"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "silent" in err and "11 silence.flac" in err


def test_every_kind_is_exercised():
    assert COVERED == set(BAD_INPUT_KINDS), set(BAD_INPUT_KINDS) ^ COVERED
    assert len(BAD_INPUT_KINDS) == len(set(BAD_INPUT_KINDS)) == 30
