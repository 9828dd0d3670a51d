"""Catalog builders (musicrep.data.datasets) and ``musicrep catalog``, on tiny datasets built in tmp_path."""

from __future__ import annotations

import csv
import logging
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data.catalog import read_csv
from musicrep.cli import main
from musicrep.data.datasets import (
    from_csv,
    from_fma,
    from_folder,
    from_gtzan,
    from_msd,
    summary_line,
)
from musicrep.data.datasets._common import clean_text, stable_ids
from musicrep.data.datasets.folder import layout_fields
from musicrep.errors import CatalogError, ConfigError
from musicrep.testing import tag_file

SR = 8000


def write_audio(path: Path, seconds: float = 1.0, **kwargs) -> Path:
    """A quiet 440 Hz tone; the format follows the file ending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y = (0.1 * np.sin(2 * np.pi * 440 * np.arange(int(SR * seconds)) / SR)).astype("float32")
    fmt = {".mp3": "MP3", ".ogg": "OGG", ".flac": "FLAC", ".wav": "WAV", ".au": "AU"}[path.suffix.lower()]
    if fmt == "OGG":
        kwargs.setdefault("subtype", "VORBIS")
    sf.write(str(path), y, SR, format=fmt, **kwargs)
    return path


def reasons(skipped) -> Counter:
    return Counter(s.reason for s in skipped)


# --------------------------------------------------------------------------- folder


def tag_id3(path: Path, frames) -> None:
    import mutagen
    from mutagen.id3 import ID3

    if path.suffix == ".mp3":
        tags = ID3()
        for frame in frames:
            tags.add(frame)
        tags.save(path)
    else:  # WAV: ID3 chunk inside RIFF
        f = mutagen.File(path)
        f.add_tags()
        for frame in frames:
            f.tags.add(frame)
        f.save()


@pytest.fixture
def tagged_dir(tmp_path):
    from mutagen.id3 import TALB, TCON, TIT2, TPE1, TPE2

    root = tmp_path / "my music"
    # FLAC, Vorbis comments, Arabic artist (RTL) and a compilation album artist
    f = write_audio(root / "x" / "a.flac")
    tag_file(f, artist="فيروز", albumartist="Various Artists", album="Best of ٢٠٢٠", title="Ya Tayr", genre="Arabic")
    # Ogg Vorbis
    f = write_audio(root / "x" / "b.ogg")
    tag_file(f, artist="Sigur Rós", album="Ágætis byrjun", title="Svefn-g-englar", genre="Post-Rock")
    # MP3: ID3v2 UTF-16 Hebrew, Latin-1 encoded 'Björk' album artist, numeric genre '(17)'
    f = write_audio(root / "x" / "c.mp3")
    tag_id3(f, [TPE1(encoding=1, text="אריק איינשטיין"), TPE2(encoding=0, text="Björk"),
                TALB(encoding=1, text="שבע שנים"), TIT2(encoding=3, text="Ani ve'ata"), TCON(encoding=0, text="(17)")])
    # WAV with an ID3 chunk; UTF-8 bytes stored as Latin-1 (a common tagger bug)
    f = write_audio(root / "x" / "d.wav", seconds=0.5)
    tag_id3(f, [TPE1(encoding=0, text="Björk".encode("utf-8").decode("latin-1")), TALB(encoding=3, text="Homogenic"),
                TIT2(encoding=3, text="Jóga\nlive")])
    return root


def test_folder_reads_tags_of_each_format(tagged_dir):
    skipped = []
    cat = from_folder(tagged_dir, skipped=skipped)
    assert skipped == []
    rows = {Path(t.path).name: t for t in cat}
    assert set(rows) == {"a.flac", "b.ogg", "c.mp3", "d.wav"}
    a, b, c, d = rows["a.flac"], rows["b.ogg"], rows["c.mp3"], rows["d.wav"]
    assert (a.artist, a.album, a.title, a.genre) == ("فيروز", "Best of ٢٠٢٠", "Ya Tayr", "Arabic")
    assert a.extra["albumartist"] == "Various Artists"
    assert a.extra["album_id"] == "Various Artists/Best of ٢٠٢٠"
    assert (b.artist, b.album, b.genre) == ("Sigur Rós", "Ágætis byrjun", "Post-Rock")
    assert (c.artist, c.album, c.title, c.genre) == ("אריק איינשטיין", "שבע שנים", "Ani ve'ata", "Rock")
    assert c.extra["albumartist"] == "Björk"
    assert (d.artist, d.album, d.title) == ("Björk", "Homogenic", "Jóga live")
    assert d.genre == ""
    assert a.duration == pytest.approx(1.0, abs=1e-3)
    assert d.duration == pytest.approx(0.5, abs=1e-3)
    assert c.duration == pytest.approx(1.0, abs=0.1)  # MP3 frames round the length
    assert Path(a.path).is_absolute() and Path(a.path).is_file()
    assert cat.track_ids == ["x-a", "x-b", "x-c", "x-d"]


def test_folder_catalog_round_trips_through_csv(tagged_dir, tmp_path):
    cat = from_folder(tagged_dir)
    out = cat.write_csv(tmp_path / "out" / "catalog.csv")
    back = read_csv(out)
    assert [(t.track_id, t.path, t.artist, t.album, t.title, t.genre) for t in back] == [
        (t.track_id, t.path, t.artist, t.album, t.title, t.genre) for t in cat
    ]
    assert [t.extra["album_id"] for t in back] == [t.extra["album_id"] for t in cat]
    assert "אריק איינשטיין" in out.read_text(encoding="utf-8")


def test_folder_layout_fallback(tmp_path):
    root = tmp_path / "lib"
    write_audio(root / "Artist Name" / "Album X" / "01 - First Song.wav")
    write_audio(root / "Artist Name" / "Album X" / "CD2" / "1-02. Second.wav")
    write_audio(root / "Solo" / "1979.flac")
    write_audio(root / "loose track.wav")
    write_audio(root / "Sigur Rós" / "( )" / "03 Untitled #3.wav")
    f = write_audio(root / "Tagged Folder" / "Some Album" / "07 file name.flac")
    tag_file(f, title="Real Title", genre="Jazz")
    cat = from_folder(root, with_duration=False)
    got = {Path(t.path).relative_to(root).as_posix(): (t.artist, t.album, t.title, t.genre, t.duration) for t in cat}
    assert got == {
        "Artist Name/Album X/01 - First Song.wav": ("Artist Name", "Album X", "First Song", "", None),
        "Artist Name/Album X/CD2/1-02. Second.wav": ("Artist Name", "Album X", "Second", "", None),
        "Solo/1979.flac": ("Solo", "", "1979", "", None),
        "loose track.wav": ("", "", "loose track", "", None),
        "Sigur Rós/( )/03 Untitled #3.wav": ("Sigur Rós", "( )", "Untitled #3", "", None),
        "Tagged Folder/Some Album/07 file name.flac": ("Tagged Folder", "Some Album", "Real Title", "Jazz", None),
    }
    assert cat.by_id("artist-name-album-x-01-first-song").album == "Album X"


def test_folder_read_tags_false_uses_only_the_layout(tagged_dir):
    cat = from_folder(tagged_dir, read_tags=False)
    t = cat.by_id("x-a")
    assert (t.artist, t.album, t.title, t.genre) == ("x", "", "a", "")
    assert t.duration == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    "rel, expected",
    [
        ("A/B/01 Title.mp3", ("A", "B", "Title")),
        ("A/B/01_Title.mp3", ("A", "B", "Title")),
        ("A/B/Disc 1/10) Title.mp3", ("A", "B", "Title")),
        ("G/A/B/001 - T.mp3", ("A", "B", "T")),
        ("A/99 Luftballons.mp3", ("A", "", "Luftballons")),
        ("A/B/2001.mp3", ("A", "B", "2001")),
    ],
)
def test_layout_fields(rel, expected):
    out = layout_fields(Path(rel))
    assert (out["artist"], out["album"], out["title"]) == expected


def test_folder_bad_files_are_skipped_not_fatal(tmp_path, caplog):
    root = tmp_path / "bad lib"
    good = write_audio(root / "Art" / "Alb" / "01 Good.wav")
    (root / "Art" / "Alb" / "02 text.mp3").write_text("this is not audio\n" * 20)
    (root / "Art" / "Alb" / "03 empty.flac").write_bytes(b"")
    (root / "Art" / "Alb" / "04 garbage.wav").write_bytes(bytes(range(256)) * 8)
    (root / "Art" / "folder.wav").mkdir()
    write_audio(root / "Art" / "folder.wav" / "05 Inside.ogg")
    (root / "Art" / "Alb" / "06 dangling.wav").symlink_to(root / "nowhere.wav")
    (root / "Art" / "Alb" / "07 link.wav").symlink_to(good)
    (root / "Art" / "Alb" / "._01 Good.wav").write_bytes(b"\x00\x05\x16\x07")
    (root / "Art" / "Alb" / "notes.txt").write_text("liner notes")
    with caplog.at_level(logging.INFO, logger="musicrep"):
        skipped = []
        cat = from_folder(root, skipped=skipped)
    names = sorted(Path(t.path).name for t in cat)
    assert names == ["01 Good.wav", "05 Inside.ogg", "07 link.wav"]
    assert reasons(skipped) == Counter({
        "cannot read audio": 2, "empty file": 1, "folder named like an audio file": 1,
        "broken link": 1, "hidden file": 1,
    })
    bad = {Path(s.item).name for s in skipped if s.reason == "cannot read audio"}
    assert bad == {"02 text.mp3", "04 garbage.wav"}
    assert "02 text.mp3" in caplog.text and "03 empty.flac" in caplog.text and "06 dangling.wav" in caplog.text
    inside = next(t for t in cat if t.title == "Inside")
    assert (inside.artist, inside.album) == ("Art", "folder.wav")


def test_folder_same_album_name_by_two_artists_is_two_albums(tmp_path):
    for artist in ("Queen", "ABBA"):
        for i in (1, 2):
            write_audio(tmp_path / artist / "Greatest Hits" / f"0{i} Song.wav", seconds=0.1)
    for i, artist in enumerate(["Ana", "Bo"]):
        f = write_audio(tmp_path / "Various" / "Hits 2020" / f"0{i} x.flac", seconds=0.1)
        tag_file(f, artist=artist, albumartist="Various Artists", album="Hits 2020")
    for i, artist in enumerate(["Cy", "Di", "Di"]):  # a compilation without album artist tags
        f = write_audio(tmp_path / "Comp" / "Summer" / f"CD{i}" / f"0{i} x.flac", seconds=0.1)
        tag_file(f, artist=artist, album="Summer")
    write_audio(tmp_path / "Eve" / "Summer" / "01 y.wav", seconds=0.1)
    cat = from_folder(tmp_path, with_duration=False)
    assert Counter(t.album for t in cat) == Counter({"Greatest Hits [ABBA]": 2, "Greatest Hits [Queen]": 2,
                                                     "Hits 2020": 2, "Summer [Various Artists]": 3,
                                                     "Summer [Eve]": 1})
    assert {t.artist for t in cat if t.album == "Hits 2020"} == {"Ana", "Bo"}
    assert {t.extra["album_id"] for t in cat if t.artist == "Di"} == {"Various Artists/Summer"}


def test_folder_undecodable_tag_bytes_and_ffmpeg_only_formats(tmp_path):
    import mutagen

    f = write_audio(tmp_path / "A" / "B" / "01 bad bytes.flac")
    tags = mutagen.File(f)
    tags["artist"], tags["title"] = "ZZZZ", "שלום עולם"
    tags.save()
    f.write_bytes(f.read_bytes().replace(b"ZZZZ", b"\xff\xfe\xc3("))  # invalid UTF-8 in a Vorbis comment
    cat = from_folder(tmp_path)
    t = cat[0]
    assert t.title == "שלום עולם" and t.artist.endswith("(") and t.album == "B"
    if not __import__("shutil").which("ffmpeg"):
        return
    import subprocess

    webm = tmp_path / "A" / "B" / "02 only ffmpeg.webm"  # neither mutagen nor soundfile reads WebM
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5",
                    "-c:a", "libopus", str(webm)], check=True)
    skipped = []
    cat = from_folder(tmp_path, skipped=skipped)
    assert skipped == [] and len(cat) == 2
    assert cat.by_id("a-b-02-only-ffmpeg").duration == pytest.approx(0.5, abs=0.05)


def test_folder_extensions_filter(tmp_path):
    write_audio(tmp_path / "a.WAV")
    write_audio(tmp_path / "b.flac")
    cat = from_folder(tmp_path, extensions=["wav"])
    assert [Path(t.path).name for t in cat] == ["a.WAV"]


def test_folder_without_audio_raises(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(CatalogError, match=r"no usable tracks.*1 empty file"):
        from_folder(tmp_path)
    with pytest.raises(CatalogError, match="not a folder"):
        from_folder(tmp_path / "missing")


def test_folder_ids_unique_and_stable(tmp_path):
    for rel in ["אמן/שיר.wav", "אמן/מנגינה.wav", "a b.wav", "a-b.flac", "Ünïcode/x.wav"]:
        write_audio(tmp_path / rel, seconds=0.1)
    first = from_folder(tmp_path, with_duration=False, read_tags=False)
    again = from_folder(tmp_path, with_duration=False, read_tags=False)
    ids = {Path(t.path).relative_to(tmp_path).as_posix(): t.track_id for t in first}
    assert len(set(ids.values())) == 5
    assert ids == {Path(t.path).relative_to(tmp_path).as_posix(): t.track_id for t in again}
    assert ids["Ünïcode/x.wav"] == "ünïcode-x"
    assert ids["a b.wav"].startswith("a-b-") and ids["a-b.flac"].startswith("a-b-")
    assert ids["אמן/שיר.wav"] == "אמן-שיר" and ids["אמן/מנגינה.wav"] == "אמן-מנגינה"
    assert stable_ids(["a b", "c"]) == stable_ids(["a b", "c"]) and stable_ids(["c"]) == ["c"]


def test_clean_text():
    assert clean_text("  a\x00b\r\nc\u2028d ") == "a b c d"
    assert clean_text("BjÃ¶rk") == "Björk"
    assert clean_text("Björk") == "Björk"
    assert clean_text("\u200fשלום") == "\u200fשלום"  # right-to-left mark kept
    assert clean_text(None) == ""


# --------------------------------------------------------------------------- csv


def test_from_csv_checks_files_and_keeps_extras(tmp_path):
    write_audio(tmp_path / "audio" / "one.wav")
    (tmp_path / "audio" / "empty.wav").write_bytes(b"")
    path = tmp_path / "cat.csv"
    path.write_text(
        "track_id,path,artist,album,duration,split\n"
        "t1,audio/one.wav,A,B,1.0,train\n"
        "t2,audio/missing.wav,A,B,,test\n"
        "t3,audio/empty.wav,A,C,,valid\n",
        encoding="utf-8",
    )
    skipped = []
    cat = from_csv(path, skipped=skipped)
    assert cat.track_ids == ["t1"]
    assert cat[0].path == str(tmp_path / "audio" / "one.wav")
    assert cat[0].extra == {"split": "train"} and cat[0].duration == 1.0
    assert reasons(skipped) == Counter({"no audio file": 1, "empty file": 1})
    assert len(from_csv(path, check_files=False)) == 3


def test_from_csv_keeps_line_separators_inside_quoted_values(tmp_path):
    from musicrep.data.catalog import Catalog, Track

    write_audio(tmp_path / "a.wav", seconds=0.1)
    Catalog([Track("t1", str(tmp_path / "a.wav"), extra={"note": "one\ntwo p\u2028q\x85r"})]).write_csv(tmp_path / "c.csv")
    t = from_csv(tmp_path / "c.csv")[0]
    assert t.extra["note"] == "one\ntwo p\u2028q\x85r"  # one row, the value kept exactly
    # in a label column (grouped on by splits) any run of whitespace is one space
    Catalog([Track("t1", str(tmp_path / "a.wav"), title="one\ntwo", album="p\u2028q\x85r")]).write_csv(tmp_path / "d.csv")
    t = from_csv(tmp_path / "d.csv")[0]
    assert (t.title, t.album) == ("one two", "p q r")


def test_from_csv_missing_columns(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text("id,file\n1,a.wav\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"cat\.csv: missing column\(s\) track_id, path"):
        from_csv(path)


# --------------------------------------------------------------------------- FMA

FMA_COLUMNS = {
    "album": ["comments", "date_created", "date_released", "engineer", "favorites", "id", "information",
              "listens", "producer", "tags", "title", "tracks", "type"],
    "artist": ["active_year_begin", "active_year_end", "associated_labels", "bio", "comments", "date_created",
               "favorites", "id", "latitude", "location", "longitude", "members", "name", "related_projects",
               "tags", "website", "wikipedia_page"],
    "set": ["split", "subset"],
    "track": ["bit_rate", "comments", "composer", "date_created", "date_recorded", "duration", "favorites",
              "genre_top", "genres", "genres_all", "information", "interest", "language_code", "license",
              "listens", "lyricist", "number", "publisher", "tags", "title"],
}


def write_fma_tracks_csv(path: Path, rows: list[dict], drop: tuple[str, ...] = ()) -> Path:
    """FMA's tracks.csv layout: groups line, fields line, 'track_id,,,...' line, then data."""
    cols = [(g, f) for g, fs in FMA_COLUMNS.items() for f in fs if f"{g}.{f}" not in drop]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([""] + [g for g, _ in cols])
        w.writerow([""] + [f for _, f in cols])
        w.writerow(["track_id"] + [""] * len(cols))
        for row in rows:
            w.writerow([row["id"]] + [row.get(f"{g}.{f}", "") for g, f in cols])
    return path


def fma_row(tid, artist, album, title, genre, subset, split, *, album_id, artist_id, duration=168, **more):
    row = {"id": tid, "artist.name": artist, "album.title": album, "track.title": title, "track.genre_top": genre,
           "set.subset": subset, "set.split": split, "album.id": album_id, "artist.id": artist_id,
           "track.duration": duration, "track.genres": "[21]", "album.tags": "[]",
           "track.license": "Attribution-NonCommercial-ShareAlike 3.0 International"}
    row.update(more)
    return row


@pytest.fixture
def fma(tmp_path):
    rows = [
        fma_row(2, "AWOL", "AWOL - A Way Of Life", "Food", "Hip-Hop", "small", "training", album_id=1, artist_id=1,
                **{"artist.bio": '<p>A Way Of Life, "A Way Of Thinking"</p>\n<p>second line</p>'}),
        fma_row(3, "AWOL", "AWOL - A Way Of Life", "Electric Ave", "Hip-Hop", "medium", "validation", album_id=1,
                artist_id=1, duration=237),
        fma_row(5, "AWOL", "AWOL - A Way Of Life", "This World", "Hip-Hop", "small", "test", album_id=1, artist_id=1,
                duration=206),
        fma_row(10, "Kurt Vile", "Constant Hitmaker", "Freeway", "Pop", "large", "training", album_id=6,
                artist_id=6, duration=161),
        fma_row(1234, "Sūn Lí 孫", "ألبوم", "Ça va", "", "small", "training", album_id=300, artist_id=200,
                duration=30),
        fma_row(20, "Nobody", "No Audio", "Gone", "Rock", "small", "training", album_id=4, artist_id=4),
        fma_row(134, "AWOL", "AWOL - A Way Of Life", "Empty", "Hip-Hop", "small", "training", album_id=1,
                artist_id=1),
    ]
    tracks_csv = write_fma_tracks_csv(tmp_path / "fma_metadata" / "tracks.csv", rows)
    audio = tmp_path / "fma small"
    for tid in (2, 3, 5, 10, 1234):
        write_audio(audio / f"{tid:06d}"[:3] / f"{tid:06d}.mp3", seconds=0.2)
    (audio / "000" / "000134.mp3").write_bytes(b"")
    return tracks_csv, audio


def test_fma_header_is_the_real_layout(fma):
    lines = fma[0].read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(",album,album,") and lines[0].endswith(",track,track")
    assert lines[1].startswith(",comments,date_created,date_released,") and lines[1].endswith(",tags,title")
    assert lines[2] == "track_id" + "," * 52


def test_fma_all_tracks_with_audio(fma):
    skipped = []
    cat = from_fma(fma[0], audio_dir=fma[1], skipped=skipped)
    assert cat.track_ids == ["2", "3", "5", "10", "1234"]
    t = cat.by_id("2")
    assert (t.artist, t.album, t.title, t.genre, t.duration) == ("AWOL", "AWOL - A Way Of Life", "Food", "Hip-Hop", 168.0)
    assert t.extra == {"album_id": "1", "artist_id": "1", "subset": "small", "split": "train", "label": "",
                       "year": ""}
    assert Path(t.path) == fma[1].absolute() / "000" / "000002.mp3"
    assert [cat.by_id(i).extra["split"] for i in ("3", "5", "10")] == ["valid", "test", "train"]
    u = cat.by_id("1234")
    assert (u.artist, u.album, u.title, u.genre) == ("Sūn Lí 孫", "ألبوم", "Ça va", "")
    assert Path(u.path).parts[-2:] == ("001", "001234.mp3")
    assert sorted((s.reason, Path(s.item).name) for s in skipped) == [("empty file", "000134.mp3"),
                                                                         ("no audio file", "000020.mp3")]


def test_fma_same_album_title_two_albums(tmp_path):
    rows = [fma_row(1, "A", "Demo", "x", "Rock", "small", "training", album_id=7, artist_id=1),
            fma_row(2, "B", "Demo", "y", "Rock", "small", "training", album_id=8, artist_id=2),
            fma_row(3, "B", "Demo", "z", "Rock", "small", "training", album_id=9, artist_id=2),
            fma_row(4, "C", "Solo", "w", "Rock", "small", "training", album_id=10, artist_id=3)]
    tracks_csv = write_fma_tracks_csv(tmp_path / "tracks.csv", rows)
    for tid in (1, 2, 3, 4):
        write_audio(tmp_path / "audio" / "000" / f"{tid:06d}.mp3", seconds=0.1)
    cat = from_fma(tracks_csv, audio_dir=tmp_path / "audio")
    assert [t.album for t in cat] == ["Demo [A]", "Demo [8]", "Demo [9]", "Solo"]


@pytest.mark.parametrize("subset, ids", [("small", ["2", "5", "1234"]), ("medium", ["2", "3", "5", "1234"]),
                                         ("large", ["2", "3", "5", "10", "1234"]), ("full", ["2", "3", "5", "10", "1234"])])
def test_fma_subsets_are_nested(fma, subset, ids):
    assert from_fma(fma[0], audio_dir=fma[1], subset=subset).track_ids == ids


def test_fma_bad_inputs(fma, tmp_path):
    tracks_csv, audio = fma
    with pytest.raises(ConfigError, match="subset 'tiny'"):
        from_fma(tracks_csv, audio_dir=audio, subset="tiny")
    broken = write_fma_tracks_csv(tmp_path / "broken.csv", [fma_row(2, "A", "B", "C", "", "small", "training",
                                                                    album_id=1, artist_id=1)],
                                  drop=("artist.name", "album.title"))
    with pytest.raises(CatalogError, match=r"broken\.csv: missing column\(s\) artist\.name, album\.title"):
        from_fma(broken, audio_dir=audio)
    with pytest.raises(CatalogError, match="not found"):
        from_fma(tmp_path / "nope.csv", audio_dir=audio)
    with pytest.raises(CatalogError, match="no usable tracks"):
        from_fma(tracks_csv, audio_dir=tmp_path)  # audio folder without the mp3s
    plain = tmp_path / "plain.csv"
    plain.write_text("track_id,path\n1,a.mp3\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"plain\.csv: missing column"):
        from_fma(plain, audio_dir=audio)


# --------------------------------------------------------------------------- GTZAN


@pytest.fixture
def gtzan(tmp_path):
    genres = tmp_path / "GTZAN data" / "genres"
    for genre in ("blues", "classical", "jazz"):
        for i in range(3):
            write_audio(genres / genre / f"{genre}.{i:05d}.wav", seconds=0.3)
    write_audio(genres / "rock" / "rock.00000.au", seconds=0.3)
    (genres / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # the known broken file
    (genres / "rock" / "rock.00001.wav").mkdir()
    (genres / "blues" / "blues.00099.wav").write_bytes(b"")
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train_filtered.txt").write_text("blues/blues.00000.wav\nblues/blues.00001.wav\njazz/jazz.00000.wav\n"
                                               "rock/rock.00000.wav\n")
    (splits / "valid_filtered.txt").write_text("classical/classical.00000.wav\njazz/jazz.00054.wav\n\n")
    (splits / "test_filtered.txt").write_text("classical/classical.00001.wav\nblues/blues.00002.wav\n")
    return genres, splits


def test_gtzan_with_splits(gtzan):
    genres, splits = gtzan
    skipped = []
    cat = from_gtzan(genres.parent, split_dir=splits, skipped=skipped)
    assert len(cat) == 10
    assert Counter(t.genre for t in cat) == Counter({"blues": 3, "classical": 3, "jazz": 3, "rock": 1})
    t = cat.by_id("blues.00001")
    assert (t.artist, t.album, t.genre, t.extra["split"]) == ("", "", "blues", "train")
    assert t.duration == pytest.approx(0.3, abs=1e-3)
    assert cat.by_id("rock.00000").extra["split"] == "train"  # .au file matched to a .wav list entry
    assert Counter(t.extra["split"] for t in cat) == Counter({"train": 4, "valid": 1, "test": 2, "": 3})
    assert cat.by_id("classical.00002").extra["split"] == ""
    assert reasons(skipped) == Counter({"cannot read audio": 1, "not a regular file": 1, "empty file": 1})


def test_gtzan_root_can_be_the_genres_folder(gtzan):
    genres, _ = gtzan
    cat = from_gtzan(genres, with_duration=False)
    assert len(cat) == 11  # the broken jazz.00054 is only caught when headers are read
    assert "split" not in cat.extra_columns and cat.by_id("jazz.00054").duration is None


def test_gtzan_bad_split_lists(gtzan, tmp_path):
    genres, splits = gtzan
    (splits / "test_filtered.txt").write_text("blues/blues.00000.wav\n")
    with pytest.raises(CatalogError, match=r"test_filtered\.txt:1: .*also in the train list"):
        from_gtzan(genres, split_dir=splits)
    (tmp_path / "nolists").mkdir()
    with pytest.raises(CatalogError, match="none of the split lists"):
        from_gtzan(genres, split_dir=tmp_path / "nolists")
    with pytest.raises(CatalogError, match="no GTZAN genre folders"):
        from_gtzan(tmp_path / "nolists")


# --------------------------------------------------------------------------- MSD

MSD_SCHEMA = (
    "CREATE TABLE songs (track_id text PRIMARY KEY, title text, song_id text, release text, artist_id text, "
    "artist_mbid text, artist_name text, duration real, artist_familiarity real, artist_hotttnesss real, "
    "year int, track_7digitalid int, shs_perf int, shs_work int)"
)


def make_msd_db(path: Path, rows, schema: str = MSD_SCHEMA) -> Path:
    con = sqlite3.connect(path)
    con.execute(schema)
    n = schema.count(",") + 1
    con.executemany(f"INSERT INTO songs VALUES ({', '.join('?' * n)})", rows)
    con.commit()
    con.close()
    return path


@pytest.fixture
def msd(tmp_path):
    rows = [
        ("TRAAAAW128F429D538", "I Didn't Mean To", "SOMZWCG12A8C13C480", "Greatest Hits", "ARD7TVE1187B99BFB1",
         "e77e51a5-4761-45b3-9847-2051f811e366", "Casual", 218.93179, 0.58, 0.40, 0, 3401791, -1, 0),
        ("TRAAABD128F429CF47", "Soul Deep", "SOCIWDW12A8C13D406", "Greatest Hits", "ARMJAGH1187FB546F3",
         "1c78ab62-db33-4433-8d0b-7c8dcf1849c2", "The Box Tops", 148.03546, 0.63, 0.41, 1969, 163690, -1, 0),
        ("TRAAADZ128F9348C2E", "Amor De Cabaret", "SOXVLOJ12AB0189215", "Sentimiento Muchacho",
         "ARKRRTF1187B9984DA", "", "Sonora Santanera", 177.47546, 0.48, 0.33, 0, 4069615, -1, 0),
        ("TRAAAEF128F4273421", "Something Girls", "SONHOTT12A8C13493C", "Friday Night in Dixie", "AR7G5I41187FB4CE6C",
         "", "Adam Ant", 233.40363, 0.64, 0.44, 1982, 4104186, -1, 0),
        ("TRAAAFD128F92F423A", "Face the Ashes", "SOFSOCN12A8C143F5D", "Muse\u0301e — מוזיאון", "ARXR32B1187FB57099",
         "", "Gob", 209.60608, 0.65, 0.37, 2007, 2040565, -1, 0),
    ]
    db = make_msd_db(tmp_path / "track_metadata.db", rows)
    audio = tmp_path / "msd audio"
    write_audio(audio / "A" / "A" / "W" / "TRAAAAW128F429D538.mp3", seconds=0.2)
    write_audio(audio / "TRAAABD128F429CF47.clip.mp3", seconds=0.2)
    write_audio(audio / "x" / "TRAAAFD128F92F423A.wav", seconds=0.2)
    (audio / "TRAAAEF128F4273421.mp3").write_bytes(b"")
    write_audio(audio / "TRZZZZZ128F0000000.mp3", seconds=0.2)  # not in the database
    (audio / "TRAAADZ128F9348C2E.txt").write_text("not audio by name")
    return db, audio


def test_msd_join(msd):
    skipped = []
    cat = from_msd(msd[0], audio_dir=msd[1], skipped=skipped)
    assert cat.track_ids == ["TRAAAAW128F429D538", "TRAAABD128F429CF47", "TRAAAFD128F92F423A"]
    a, b, c = cat
    assert (a.artist, a.album, a.title, a.genre) == ("Casual", "Greatest Hits [Casual]", "I Didn't Mean To", "")
    assert a.duration == pytest.approx(218.93179)
    assert b.album == "Greatest Hits [The Box Tops]"  # two artists' "Greatest Hits" are two albums
    assert a.extra == {"artist_id": "ARD7TVE1187B99BFB1", "album_id": "ARD7TVE1187B99BFB1/Greatest Hits",
                       "song_id": "SOMZWCG12A8C13C480", "year": "0", "track_7digitalid": "3401791"}
    assert c.album == "Musée — מוזיאון"  # NFC-normalised, RTL text kept
    assert Path(b.path).name == "TRAAABD128F429CF47.clip.mp3"
    assert sorted((s.reason, Path(s.item).name) for s in skipped) == [
        ("empty file", "TRAAAEF128F4273421.mp3"), ("no audio file", "TRAAADZ128F9348C2E"),
        ("not in track_metadata.db", "TRZZZZZ128F0000000.mp3"),
    ]


def test_msd_bad_inputs(msd, tmp_path):
    db, audio = msd
    missing = tmp_path / "nope.db"
    with pytest.raises(CatalogError, match=r"nope\.db: MSD track_metadata\.db not found"):
        from_msd(missing, audio_dir=audio)
    assert not missing.exists()  # opened read-only: nothing created
    text = tmp_path / "text.db"
    text.write_text("hello, not sqlite" * 100)
    with pytest.raises(CatalogError, match=r"text\.db: not an SQLite database"):
        from_msd(text, audio_dir=audio)
    thin = make_msd_db(tmp_path / "thin.db", [("TRAAAAW128F429D538", "t")], "CREATE TABLE songs (track_id text, title text)")
    with pytest.raises(CatalogError, match=r"thin\.db: table songs lacks column\(s\) release, artist_id, artist_name, duration"):
        from_msd(thin, audio_dir=audio)
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE x (a int)")
    other.close()
    with pytest.raises(CatalogError, match="no table 'songs'"):
        from_msd(tmp_path / "other.db", audio_dir=audio)
    (tmp_path / "empty audio").mkdir()
    with pytest.raises(CatalogError, match="no usable tracks"):
        from_msd(db, audio_dir=tmp_path / "empty audio")


# --------------------------------------------------------------------------- CLI


def test_cli_catalog_each_source(tagged_dir, fma, gtzan, msd, tmp_path, capsys):
    out = tmp_path / "out"
    cases = {
        "folder": (["folder", str(tagged_dir)], 4),
        "fma": (["fma", str(fma[0]), str(fma[1]), "--subset", "small"], 3),
        "gtzan": (["gtzan", str(gtzan[0]), "--splits", str(gtzan[1])], 10),
        "msd": (["msd", str(msd[0]), str(msd[1])], 3),
    }
    for name, (args, n) in cases.items():
        target = out / f"{name}.csv"
        assert main(["-q", "catalog", *args, "-o", str(target)]) == 0, name
        printed = capsys.readouterr().out
        assert printed.startswith(f"{target}: {n} tracks"), printed
        assert len(read_csv(target)) == n
    assert "skipped 3 (empty file: 1, no audio file: 1, not in track_metadata.db: 1)" in printed  # msd
    gt = read_csv(out / "gtzan.csv")
    assert Counter(t.extra["split"] for t in gt)["train"] == 4
    fm = read_csv(out / "fma.csv").by_id("5")
    assert (fm.artist, fm.extra["split"], fm.extra["subset"], fm.extra["album_id"]) == ("AWOL", "test", "small", "1")
    assert main(["-q", "catalog", "folder", str(tagged_dir), "--ext", "flac", "--no-tags", "--no-duration",
                 "-o", str(out / "flac.csv")]) == 0
    capsys.readouterr()
    only = read_csv(out / "flac.csv")
    assert [(t.track_id, t.artist, t.title, t.duration) for t in only] == [("x-a", "x", "a", None)]
    # csv: the folder catalog read back, checked and rewritten
    assert main(["-q", "catalog", "csv", str(out / "folder.csv"), "-o", str(out / "again.csv")]) == 0
    assert capsys.readouterr().out.strip().endswith("skipped 0")
    assert [t.artist for t in read_csv(out / "again.csv")] == [t.artist for t in read_csv(out / "folder.csv")]


def test_cli_summary_line_counts(gtzan, capsys, tmp_path):
    target = tmp_path / "g.csv"
    assert main(["-q", "catalog", "gtzan", str(gtzan[0].parent), "-o", str(target)]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (f"{target}: 10 tracks, 0 artists, 0 albums, 4 genres, 0.00 h; skipped 3 "
                    "(cannot read audio: 1, empty file: 1, not a regular file: 1)")


def test_cli_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,file\n1,a.wav\n", encoding="utf-8")
    assert main(["-q", "catalog", "csv", str(bad), "-o", str(tmp_path / "o.csv")]) == 2
    assert f"error: {bad}: missing column(s) track_id, path" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(SystemExit):
        main(["catalog", "folder", str(tmp_path)])  # -o is required


def test_summary_line_without_skips(tagged_dir):
    cat = from_folder(tagged_dir)
    assert summary_line(cat) == "4 tracks, 4 artists, 4 albums, 3 genres, 0.00 h; skipped 0"
