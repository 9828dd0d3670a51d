"""A new user's first hour with their own messy library: decoders that talk on stderr,
Korean and accented names, loose files in Downloads/, and report figures that must
show every script and say which songs were held out."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import platform
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data import audio, decoder_capture
from musicrep.report import figures as report
from musicrep.data.audio import load_audio, stream_audio
from musicrep.data.decoder_capture import capture_decoder_output
from musicrep.data.catalog import display_width, fit_column, read_csv
from musicrep.data.datasets import from_folder
from musicrep.errors import UnreadableAudioError
from musicrep.evaluation.maps import HELD_OUT, TRAIN, UNUSED, EmbeddingMap, split_roles
from musicrep.report.figures import plot_confusion, plot_curves, plot_map
from musicrep.data.splits import Split, write_splits
from musicrep.testing import tag_file
from musicrep.evaluation.probe import ProbeResult
from musicrep.evaluation.transfer import TransferResult

SR = 22050
HAS_FFMPEG = shutil.which("ffmpeg") is not None
needs_mp3 = pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3 (needs >= 1.1)")
GLIBC = platform.libc_ver()[0] == "glibc"

#: Junk that mpg123 cannot resync over: it gives up with an error ("Giving up resync").
NOISE = bytes((i * 37 + 11) % 256 for i in range(3000))
#: MPEG sync words without a frame: mpg123 skips them, complains, then ends early without an error.
FALSE_SYNC = b"\xff\xfb" * 500


def tone(seconds: float = 3.0, sr: int = SR) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def damaged_mp3(path: Path, *, junk: bytes, at: float, seconds: float = 3.0) -> Path:
    """A 440 Hz MP3 (written by libsndfile) with ``junk`` inserted at fraction ``at`` of its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds), SR, format="MP3")
    data = path.read_bytes()
    cut = int(len(data) * at)
    path.write_bytes(data[:cut] + junk + data[cut:])
    return path


def write_wav(path: Path, seconds: float = 0.2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, 8000), 8000)
    return path


# --------------------------------------------------------------------------- 1. decoder chatter


@needs_mp3
def test_decoder_notes_become_one_debug_line_not_stderr(tmp_path, capfd, caplog):
    path = damaged_mp3(tmp_path / "resync.mp3", junk=FALSE_SYNC, at=1 / 3)
    with caplog.at_level(logging.DEBUG, logger="musicrep.data.audio"):
        y = load_audio(path)
    assert capfd.readouterr().err == ""  # mpg123's "Note: Illegal Audio-MPEG-Header ..." used to land here
    said = [r.getMessage() for r in caplog.records if "the decoder said" in r.getMessage()]
    assert len(said) == 1 and "Illegal Audio-MPEG-Header" in said[0] and str(path) in said[0]
    assert len(y) > 0


@needs_mp3
@pytest.mark.skipif(not HAS_FFMPEG, reason="needs ffmpeg")
def test_an_mp3_mpg123_quietly_stops_on_is_kept_whole(tmp_path, capfd):
    path = damaged_mp3(tmp_path / "resync.mp3", junk=FALSE_SYNC, at=1 / 3)
    notes: list[str] = []
    y = np.concatenate(list(stream_audio(path, notes=notes)))
    # libsndfile alone ends after 0.7 s of 3 s without an error; ffmpeg decodes the rest
    assert len(y) > 2.5 * SR
    assert len(notes) == 1 and "it ended early" in notes[0] and "ffmpeg decoded the rest" in notes[0]
    assert "Note:" not in capfd.readouterr().err


@needs_mp3
def test_a_file_that_then_fails_gives_the_decoders_reason(tmp_path, capfd, monkeypatch):
    path = damaged_mp3(tmp_path / "noise.mp3", junk=NOISE, at=0.5)
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)  # no ffmpeg to take over
    with pytest.raises(UnreadableAudioError, match="decoder: .*Giving up resync"):
        load_audio(path)
    assert capfd.readouterr().err == ""


@needs_mp3
@pytest.mark.skipif(not GLIBC, reason="other threads' lines are only safe where C's stderr can be swapped")
def test_lines_other_threads_write_during_a_decode_still_reach_stderr(tmp_path, capfd):
    path = damaged_mp3(tmp_path / "resync.mp3", junk=FALSE_SYNC, at=1 / 3)
    stop = threading.Event()
    written = []

    def talk() -> None:  # a log handler or progress bar of another thread: straight to fd 2
        while not stop.wait(0.001):
            line = f"our line {len(written)}"
            os.write(2, (line + "\n").encode())
            written.append(line)

    thread = threading.Thread(target=talk)
    thread.start()
    try:
        for _ in range(5):
            load_audio(path)
    finally:
        stop.set()
        thread.join()
    err = capfd.readouterr().err
    assert written and set(written) <= set(err.splitlines())
    assert "Note:" not in err and "Illegal Audio-MPEG-Header" not in err


@needs_mp3
def test_descriptor_redirect_where_c_stderr_cannot_be_swapped(tmp_path, capfd, caplog, monkeypatch):
    """The fallback of worker processes on other C libraries: file descriptor 2 itself."""
    path = damaged_mp3(tmp_path / "resync.mp3", junk=FALSE_SYNC, at=1 / 3)
    monkeypatch.setattr(decoder_capture._CAPTURE, "mode", "fd")
    with caplog.at_level(logging.DEBUG, logger="musicrep.data.audio"):
        load_audio(path)
    assert capfd.readouterr().err == ""
    assert any("Illegal Audio-MPEG-Header" in r.getMessage() for r in caplog.records)
    os.write(2, b"after the decode\n")  # fd 2 is the terminal again
    assert capfd.readouterr().err == "after the decode\n"


def _c_stderr_says(text: str) -> None:
    libc = ctypes.CDLL(None)
    libc.fputs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    libc.fputs(text.encode() + b"\n", ctypes.c_void_p.in_dll(libc, "stderr").value)


@pytest.mark.skipif(not GLIBC or "fork" not in multiprocessing.get_all_start_methods(), reason="glibc fork")
def test_a_child_forked_during_a_capture_writes_to_the_real_stderr(capfd):
    said: list[str] = []
    with capture_decoder_output(into=said):
        proc = multiprocessing.get_context("fork").Process(target=_c_stderr_says, args=("the child speaks",))
        proc.start()
        proc.join()
    assert proc.exitcode == 0
    assert "the child speaks" in capfd.readouterr().err and said == []


@needs_mp3
def test_prepare_workers_keep_decoder_notes_off_stderr(tmp_path, capfd):
    from musicrep.data.catalog import Catalog, Track
    from musicrep.data.prepare import prepare

    path = damaged_mp3(tmp_path / "resync.mp3", junk=FALSE_SYNC, at=1 / 3, seconds=6.0)
    prepare(Catalog([Track(track_id="t", path=str(path))]), out_dir=tmp_path / "store", workers=1)
    assert "Note:" not in capfd.readouterr().err


# --------------------------------------------------------------------------- 2. non-Latin ids, wide columns


def test_ids_keep_hangul_and_accents(tmp_path):
    write_wav(tmp_path / "헤로즈" / "히어로즈" / "1-01 영웅.wav")
    write_wav(tmp_path / "Ólafur Arnalds" / "Living Room Songs" / "01 Fyrsta.wav")
    write_wav(tmp_path / "Artist Name" / "Album X" / "01 - First Song.wav")
    cat = from_folder(tmp_path, with_duration=False)
    ids = {Path(t.path).relative_to(tmp_path).as_posix(): t.track_id for t in cat}
    assert ids == {
        "헤로즈/히어로즈/1-01 영웅.wav": "헤로즈-히어로즈-1-01-영웅",
        "Ólafur Arnalds/Living Room Songs/01 Fyrsta.wav": "ólafur-arnalds-living-room-songs-01-fyrsta",
        "Artist Name/Album X/01 - First Song.wav": "artist-name-album-x-01-first-song",  # ASCII: as before
    }
    assert [t.track_id for t in read_csv(cat.write_csv(tmp_path / "c.csv"))] == cat.track_ids


def test_fit_column_aligns_wide_characters():
    names = ["헤로즈", "Ólafur Arnalds", "宇多田ヒカル - First Love (Remastered)", "abc"]
    rows = [fit_column(n, width=16) + "|" for n in names]
    assert [display_width(r) for r in rows] == [17] * 4  # the bar lines up in a terminal
    assert rows[0] == "헤로즈" + " " * 10 + "|" and display_width("헤로즈") == 6
    assert fit_column("宇多田", width=5, align=">") == " 宇多"  # a wide letter that does not fit is dropped whole


# --------------------------------------------------------------------------- 3. figures in every script


def _glyph_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_a_hangul_legend_has_every_glyph(tmp_path, caplog):
    if len(report.figure_fonts()) == 1:
        pytest.skip(f"no CJK font installed ({report.FONT_PACKAGE})")
    rng = np.random.default_rng(0)
    m = EmbeddingMap(name="joint", xy=rng.normal(size=(6, 2)), labels={"artist": ["헤로즈", "빅뱅", "宇多田ヒカル"] * 2})
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="musicrep"):
        warnings.simplefilter("always")
        plot_map(m, column="artist", path=tmp_path / "map.png")
    assert _glyph_warnings(caught) == []
    assert report.FONT_PACKAGE not in caplog.text


def test_without_a_cjk_font_one_warning_names_the_package(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(report, "figure_fonts", lambda: ("DejaVu Sans",))
    monkeypatch.setattr(report, "_font_warning_given", False)
    m = EmbeddingMap(name="joint", xy=np.random.default_rng(0).normal(size=(4, 2)), labels={"artist": ["헤로즈", "빅뱅"] * 2})
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="musicrep"):
        warnings.simplefilter("always")
        plot_map(m, column="artist", path=tmp_path / "a.png")
        plot_map(m, column="artist", path=tmp_path / "b.png")
    assert (tmp_path / "b.png").is_file() and _glyph_warnings(caught) == []
    named = [r for r in caplog.records if report.FONT_PACKAGE in r.getMessage()]
    assert len(named) == 1 and "apt-get install fonts-wqy-microhei" in named[0].getMessage()


# --------------------------------------------------------------------------- 4. folders that are not artists


def test_loose_folders_give_no_artist_and_say_so(tmp_path, caplog):
    for artist, album in (("Queen", "Jazz"), ("빅뱅", "Made")):
        for i in (1, 2):
            write_wav(tmp_path / artist / album / f"0{i} Song {i}.wav")
    write_wav(tmp_path / "Downloads" / "track03.wav")
    write_wav(tmp_path / "Downloads" / "Real Song Name.wav")
    write_wav(tmp_path / "New folder (2)" / "Album" / "01 x.wav")
    tagged = write_wav(tmp_path / "Downloads" / "tagged.flac")
    tag_file(tagged, artist="Sigur Rós", title="Hoppípolla")
    write_wav(tmp_path / "stuff" / "track01.wav")
    write_wav(tmp_path / "stuff" / "02.wav")
    write_wav(tmp_path / "Solo" / "1979.wav")  # a real Artist/Title.ext file: kept
    write_wav(tmp_path / "top.wav")
    with caplog.at_level(logging.WARNING, logger="musicrep"):
        cat = from_folder(tmp_path, with_duration=False)
    artist = {Path(t.path).relative_to(tmp_path).as_posix(): t.artist for t in cat}
    assert artist == {
        "Queen/Jazz/01 Song 1.wav": "Queen", "Queen/Jazz/02 Song 2.wav": "Queen",
        "빅뱅/Made/01 Song 1.wav": "빅뱅", "빅뱅/Made/02 Song 2.wav": "빅뱅",
        "Downloads/track03.wav": "", "Downloads/Real Song Name.wav": "", "Downloads/tagged.flac": "Sigur Rós",
        "New folder (2)/Album/01 x.wav": "", "stuff/track01.wav": "", "stuff/02.wav": "", "Solo/1979.wav": "Solo",
        "top.wav": "",
    }
    loose_album = cat.by_id("new-folder-2-album-01-x")
    assert (loose_album.album, loose_album.extra["album_id"]) == ("Album", "New folder (2)/Album")
    lines = [r.getMessage() for r in caplog.records if "no artist" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("6 file(s) have neither an artist tag nor an artist folder")
    assert "2 in Downloads/" in lines[0] and "2 in stuff/" in lines[0] and "1 directly in the folder searched" in lines[0]


def test_an_artist_title_library_keeps_its_folder_artists(tmp_path, caplog):
    write_wav(tmp_path / "Queen" / "track01.wav")  # no folder anywhere holds albums: every folder is an artist
    write_wav(tmp_path / "ABBA" / "Waterloo.wav")
    write_wav(tmp_path / "downloads" / "x.wav")  # except one no artist folder is named like
    with caplog.at_level(logging.WARNING, logger="musicrep"):
        cat = from_folder(tmp_path, with_duration=False, read_tags=False)
    assert sorted(t.artist for t in cat) == ["", "ABBA", "Queen"]
    assert "1 in downloads/, a folder name that is never an artist's" in caplog.text


# --------------------------------------------------------------------------- 5. what the figures say


@pytest.fixture
def drawn(monkeypatch):
    """The figures plot functions make, kept instead of saved."""
    figs = []

    def keep(fig, path):
        figs.append(fig)
        return path

    monkeypatch.setattr(report, "_savefig", keep)
    return figs


def _metrics(run: Path, columns: list[str]) -> Path:
    run.mkdir(parents=True)
    rows = [",".join(columns)] + [",".join(str(1.0 / (e + k + 1)) for k in range(len(columns))) for e in range(3)]
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    return run


def test_curves_draw_each_line_once(tmp_path, drawn):
    single = _metrics(tmp_path / "artist", ["step", "train_loss", "valid_loss", "valid_acc", "train_loss_artist",
                                            "train_acc_artist", "valid_loss_artist", "valid_acc_artist"])
    plot_curves(single, path=tmp_path / "a.png")
    loss, acc = ([line.get_label() for line in ax.get_lines()] for ax in drawn[0].axes)
    assert loss == ["train_loss", "valid_loss"]  # train_loss_artist is the same numbers
    assert acc == ["valid_acc", "train_acc_artist"]  # no total train accuracy: the concept's is kept
    joint = _metrics(tmp_path / "joint", ["step", "train_loss", "train_loss_artist", "train_loss_album"])
    plot_curves(joint, path=tmp_path / "j.png")
    assert [line.get_label() for line in drawn[1].axes[0].get_lines()] == ["train_loss", "train_loss_artist",
                                                                         "train_loss_album"]


def test_confusion_prints_counts_and_leaves_out_classes_without_test_songs(tmp_path, drawn):
    classes = ["발라드", "jazz", "rock"]
    res = ProbeResult(method="joint", accuracy_mean=0.7, accuracy_std=0.0, accuracies=[0.7, 0.7], classes=classes,
                      confusion=[[8, 2, 0], [0, 0, 0], [3, 1, 6]])
    tr = TransferResult(dataset="mine", classes=classes, counts={"test": 10}, split_source="seeded",
                        methods={"joint": res})
    plot_confusion(tr, method="joint", path=tmp_path / "c.png")
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.texts] == ["8", "2", "0", "3", "1", "6"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["발라드 (10)", "rock (10)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == classes  # jazz can still be predicted
    assert "no test songs: jazz" in ax.get_xlabel() and "2 trials" in ax.get_xlabel()


def test_maps_mark_held_out_songs_from_the_runs_split(tmp_path, drawn):
    run = tmp_path / "run"
    write_splits({
        "artist": Split("artist", (("a1", "A", "train"), ("a2", "A", "valid"), ("b1", "B", "train"),
                                   ("b2", "B", "test"))),
        "album": Split("album", (("a1", "X", "train"), ("c1", "Y", "train"), ("c2", "Y", "test"))),
    }, folder=run / "split")
    ids = ["a1", "a2", "b1", "b2", "c1", "c2", "z9"]
    assert split_roles(run, concept="artist", track_ids=ids) == [TRAIN, HELD_OUT, TRAIN, HELD_OUT, UNUSED,
                                                                 HELD_OUT, UNUSED]
    assert split_roles(run, concept="joint", track_ids=ids)[4] == TRAIN
    assert split_roles(run, concept="joint", track_ids=["other", "store"]) is None
    assert split_roles(tmp_path / "no-run", concept="joint", track_ids=ids) is None
    roles = split_roles(run, concept="artist", track_ids=ids)
    m = EmbeddingMap(name="artist", xy=np.arange(14.0).reshape(7, 2), labels={"artist": list("AABBCCZ")}, roles=roles)
    assert EmbeddingMap.from_dict(m.to_dict()).roles == roles
    plot_map(m, column="artist", path=tmp_path / "m.png")
    ax = drawn[0].axes[0]
    hollow = [c for c in ax.collections if len(c.get_offsets()) and len(c.get_facecolors()) == 0]
    assert sorted(map(tuple, np.concatenate([c.get_offsets() for c in hollow]).tolist())) == [
        (2.0, 3.0), (6.0, 7.0), (10.0, 11.0)]  # a2, b2, c2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "held out, valid/test (3)" in legend and "training song (2)" in legend
