"""MagnaTagATune's catalog (musicrep.data.datasets.mtat) on a tiny tree in its own layout, built in tmp_path."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from musicrep.data.catalog import read_csv
from musicrep.cli import main
from musicrep.data.datasets import from_mtat
from musicrep.data.datasets.mtat import REFERENCE_TOP50, SPLIT_OF_FOLDER, top_tags
from musicrep.errors import CatalogError, ConfigError
from musicrep.testing import synth_song

#: tag columns of the tiny annotations_final.csv, in file order (the real one has 188)
TAGS = ("guitar", "classical", "slow", "techno", "rock", "choral")
#: clip_id -> (folder, tags). Counts over all rows: guitar 7, classical 6, slow 6 (a tie that
#: column order breaks: classical first), techno 3, rock 1, choral 0.
CLIPS: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("0", ("guitar", "slow")),
    2: ("0", ("classical",)),
    3: ("5", ("guitar", "techno")),
    4: ("5", ("slow",)),
    5: ("b", ("classical", "slow")),
    6: ("b", ("guitar",)),  # absent from clip_info_final.csv: names from its file name
    7: ("c", ("guitar", "classical")),
    8: ("c", ("techno",)),  # no top-3 tag
    9: ("d", ("slow", "rock")),
    10: ("d", ("classical",)),
    11: ("e", ("guitar", "techno")),
    12: ("f", ("guitar", "classical", "slow")),
    13: ("e", ("guitar",)),  # its audio file is missing
    14: ("f", ("classical", "slow")),  # its audio file is empty
    15: ("9", ()),  # no tag at all, like thousands of MTAT clips
}
MISSING, EMPTY = 13, 14


def mp3_path(clip: int) -> str:
    """``folder/artist-album-NN-title-start-end.mp3`` as in MTAT (``_`` for spaces)."""
    folder = CLIPS[clip][0]
    return f"{folder}/artist_{clip % 4}-album_{clip % 4}_{clip % 2}-{clip:02d}-song_{clip}-30-59.mp3"


def _write_tsv(path: Path, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_ALL)  # MTAT quotes every field
        writer.writerow(header)
        writer.writerows(rows)


def make_mtat(root: Path, *, seconds: float = 0.3, sr: int = 22050, audio_dir: Path | None = None) -> Path:
    """MTAT's layout: tab-separated annotations_final.csv and clip_info_final.csv, MP3s in 0/ .. f/."""
    root.mkdir(parents=True, exist_ok=True)
    audio_dir = audio_dir or root
    _write_tsv(root / "annotations_final.csv", ["clip_id", *TAGS, "mp3_path"],
               [[c, *(int(t in tags) for t in TAGS), mp3_path(c)] for c, (_f, tags) in CLIPS.items()])
    info = [[c, c, f"Song {c}", f"Artist {c % 4}", f"Album {c % 4}.{c % 2}", "http://x", 30, 59, "http://y", mp3_path(c)]
            for c in CLIPS if c != 6]
    _write_tsv(root / "clip_info_final.csv", ["clip_id", "track_number", "title", "artist", "album", "url",
                                              "segmentStart", "segmentEnd", "original_url", "mp3_path"], info)
    for clip in CLIPS:
        path = audio_dir / mp3_path(clip)
        path.parent.mkdir(parents=True, exist_ok=True)
        if clip == MISSING:
            continue
        if clip == EMPTY:
            path.write_bytes(b"")
            continue
        y = synth_song(artist=clip % 4, album=clip % 2, song=clip, seconds=seconds, sr=sr)
        sf.write(str(path), y, sr, format="MP3")
    return root


@pytest.fixture(scope="module")
def mtat(tmp_path_factory) -> Path:
    return make_mtat(tmp_path_factory.mktemp("mtat") / "MTAT")


def test_top_tags_folder_split_and_names(mtat):
    skipped = []
    cat = from_mtat(mtat, top=3, skipped=skipped)
    assert cat.track_ids == ["1", "2", "3", "4", "5", "6", "7", "9", "10", "11", "12"]
    by = {t.track_id: t for t in cat}
    # guitar 7 > classical 6 = slow 6 (column order) > techno 3; tags listed most frequent first
    assert by["12"].extra["tags"] == "guitar;classical;slow"
    assert by["3"].extra["tags"] == "guitar" and by["9"].extra["tags"] == "slow"
    assert {t.track_id: t.extra["split"] for t in cat} == {
        "1": "train", "2": "train", "3": "train", "4": "train", "5": "train", "6": "train",
        "7": "valid", "9": "test", "10": "test", "11": "test", "12": "test"}
    t1 = by["1"]
    assert (t1.artist, t1.album, t1.title, t1.duration, t1.genre) == ("Artist 1", "Album 1.1", "Song 1", 29.0, "")
    assert t1.extra["mp3_path"] == mp3_path(1) and Path(t1.path) == (mtat / mp3_path(1)).absolute()
    # clip 6 is not in clip_info_final.csv: the slugs of its file name
    assert (by["6"].artist, by["6"].album, by["6"].title, by["6"].duration) == ("artist_2", "album_2_0", "song_6", None)
    assert Counter(s.reason for s in skipped) == {"no top-3 tag": 2, "no audio file": 1, "empty file": 1}


def test_top_n_changes_the_tags_and_the_clips(mtat):
    two = from_mtat(mtat, top=2)
    assert {tag for t in two for tag in t.extra["tags"].split(";")} == {"guitar", "classical"}
    assert "4" not in two and "9" not in two  # only slow among their tags
    five = from_mtat(mtat, top=5)
    assert five.by_id("9").extra["tags"] == "slow;rock" and "8" in five
    with pytest.raises(ConfigError, match="top=0"):
        from_mtat(mtat, top=0)


def test_untagged_clips_are_kept_when_asked(mtat):
    cat = from_mtat(mtat, top=3, keep_untagged=True)
    assert cat.by_id("15").extra["tags"] == "" and cat.by_id("15").extra["split"] == "train"
    assert cat.by_id("8").extra["split"] == "valid" and len(cat) == 13


def test_missing_and_empty_audio_are_skipped_by_name(mtat, caplog):
    skipped = []
    with caplog.at_level(logging.WARNING, logger="musicrep.data.datasets.mtat"):
        from_mtat(mtat, top=3, skipped=skipped)
    by_reason = {s.reason: s for s in skipped}
    assert by_reason["no audio file"].item == str(mtat / mp3_path(MISSING))
    assert by_reason["empty file"].item == str(mtat / mp3_path(EMPTY))
    assert by_reason["no audio file"].detail == f"clip {MISSING}"
    assert Path(mp3_path(MISSING)).name in caplog.text and Path(mp3_path(EMPTY)).name in caplog.text


def test_the_folder_split_is_twelve_one_three():
    assert Counter(SPLIT_OF_FOLDER.values()) == {"train": 12, "valid": 1, "test": 3}
    assert SPLIT_OF_FOLDER["b"] == "train" and SPLIT_OF_FOLDER["c"] == "valid" and SPLIT_OF_FOLDER["d"] == "test"


def test_audio_under_mp3_latin1_names_and_malformed_rows(tmp_path):
    root = make_mtat(tmp_path / "MTAT", audio_dir=tmp_path / "MTAT" / "mp3")
    with open(root / "annotations_final.csv", "a", encoding="utf-8") as fh:
        fh.write('"16"\t"1"\t"0"\n')  # too few fields
        fh.write('"17"\t"2"\t"0"\t"0"\t"0"\t"0"\t"0"\t"0/x-y-01-z-0-29.mp3"\n')  # a tag value of 2
    info = (root / "clip_info_final.csv").read_text(encoding="utf-8").replace("Artist 1", "Björk")
    (root / "clip_info_final.csv").write_text(info + '"2"\t"short row"\n', encoding="latin-1")  # an old encoding
    skipped = []
    cat = from_mtat(root, top=3, skipped=skipped)
    assert len(cat) == 11 and Path(cat.by_id("1").path).parent.parent.name == "mp3"
    assert cat.by_id("1").artist == "Björk" and cat.by_id("2").artist == "Artist 2"
    rows = [s for s in skipped if s.reason == "malformed row"]
    assert [s.item.rsplit(":", 1)[1] for s in rows] == ["17", "18"]  # line numbers of the file


def test_clear_errors(tmp_path):
    with pytest.raises(CatalogError, match="audio folders"):
        from_mtat(tmp_path)
    (tmp_path / "0").mkdir()
    with pytest.raises(CatalogError, match="annotations_final.csv not found"):
        from_mtat(tmp_path)
    (tmp_path / "annotations_final.csv").write_text("clip_id,guitar,mp3_path\n1,1,0/a.mp3\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="tab-separated"):
        from_mtat(tmp_path)
    (tmp_path / "annotations_final.csv").write_text("clip_id\tguitar\tmp3_path\n1\t1\t0/a.mp3\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="no usable tracks.*1 no audio file"):
        from_mtat(tmp_path)


def test_top_tags_ties_and_the_reference_check(caplog):
    rows = [("1", "0/a.mp3", [1, 1, 0]), ("2", "0/b.mp3", [0, 1, 1])]
    assert top_tags(["a", "b", "c"], rows=rows, top=2) == ["b", "a"]  # b 2; a and c 1 each: a's column first
    assert top_tags(["a", "b", "c"], rows=rows, top=9) == ["b", "a", "c"]
    # a full-size file whose top 50 is the reference's: no warning; another 50: a warning naming them
    names = [*REFERENCE_TOP50, *(f"other{i}" for i in range(188 - 50))]
    ref_rows = [("1", "0/a.mp3", [1] * 50 + [0] * 138)]
    with caplog.at_level(logging.WARNING, logger="musicrep.data.datasets.mtat"):
        assert top_tags(names, rows=ref_rows, top=50) == list(REFERENCE_TOP50)
        assert "differ" not in caplog.text
        top_tags(names, rows=[("1", "0/a.mp3", [0] * 138 + [1] * 50)], top=50)
    assert "differ from the reference" in caplog.text and "other137" in caplog.text


def test_cli_catalog_mtat(mtat, tmp_path, capsys):
    target = tmp_path / "mtat.csv"
    assert main(["-q", "catalog", "mtat", str(mtat), "--top", "3", "-o", str(target)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{target}: 11 tracks") and "skipped 4 (no top-3 tag: 2, empty file: 1, no audio file: 1)" in line
    back = read_csv(target)
    assert back.by_id("12").extra["tags"] == "guitar;classical;slow" and back.by_id("12").extra["split"] == "test"
    assert main(["-q", "catalog", "mtat", str(mtat), "--keep-untagged", "-o", str(tmp_path / "all.csv")]) == 0
    assert len(read_csv(tmp_path / "all.csv")) == 13
