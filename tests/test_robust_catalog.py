"""No silent wrong results from reading and writing catalogs.

Labels that only look different must be one label, a file name must come back
byte for byte, a malformed header or duration must be refused by name, and a
catalog rewritten into another folder must still find its audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data.catalog import Catalog, Track, read_csv
from musicrep.cli import main
from musicrep.data.datasets import from_csv
from musicrep.errors import CatalogError
from musicrep.data.store import FeatureStore


def write_audio(path: Path, seconds: float = 3.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 22050)) / 22050
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    return path


# ------------------------------------------------------------------ 6a. look-alike labels

LOOK_ALIKES = "\n".join([
    "track_id,path,artist,album,genre,title",
    "t1,a.wav,Beyonc\u00e9,Lemonade,R&B,Formation",      # NFC
    "t2,a.wav,Beyonce\u0301,Lemonade\u200b,R&B ,Formation",  # NFD, zero-width space, trailing space
    "t3,a.wav,\ufeffBeyonc\u00e9,Le\u2060monade,R\u200d&B,\"Formation\r\n\"",  # BOM, word joiner, ZWJ, line break
    "t4,a.wav,ABBA,Arrival,Pop,Dancing  Queen",
    "t5,a.wav,Abba,Arrival,pop,Dancing\u00a0Queen",      # other case, no-break space
]) + "\n"


def test_labels_that_only_look_different_are_one_label(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text(LOOK_ALIKES, encoding="utf-8")
    cat = read_csv(path)
    assert {cat.by_id(t).artist for t in ("t1", "t2", "t3")} == {"Beyonc\u00e9"}
    assert {cat.by_id(t).album for t in ("t1", "t2", "t3")} == {"Lemonade"}
    assert {cat.by_id(t).genre for t in ("t1", "t2", "t3")} == {"R&B"}
    assert {cat.by_id(t).title for t in ("t1", "t2", "t3")} == {"Formation"}
    assert cat.by_id("t4").title == cat.by_id("t5").title == "Dancing Queen"
    # case tells artists apart unless asked otherwise
    assert cat.summary()["artists"] == {"Beyonc\u00e9": 3, "ABBA": 1, "Abba": 1}
    folded = read_csv(path, casefold_labels=True)
    assert folded.summary()["artists"] == {"beyonc\u00e9": 3, "abba": 2}
    assert {t.genre for t in folded} == {"r&b", "pop"}
    # built in memory (the dataset builders, a store's index) the same holds
    assert Track("x", "a.wav", artist="Beyonce\u0301 \u200b").artist == "Beyonc\u00e9"
    from musicrep.data.catalog import normalize_label

    assert normalize_label("ABBA", casefold=True) == normalize_label("Abba", casefold=True)


def test_cli_casefold_labels(tmp_path, capsys):
    write_audio(tmp_path / "a.wav")
    (tmp_path / "cat.csv").write_text(LOOK_ALIKES, encoding="utf-8")
    assert main(["-q", "catalog", "csv", str(tmp_path / "cat.csv"), "-o", str(tmp_path / "plain.csv")]) == 0
    assert "5 tracks, 3 artists, 2 albums" in capsys.readouterr().out
    assert main(["-q", "catalog", "csv", str(tmp_path / "cat.csv"), "--casefold-labels",
                 "-o", str(tmp_path / "folded.csv")]) == 0
    assert "5 tracks, 2 artists, 2 albums, 2 genres" in capsys.readouterr().out
    assert {t.artist for t in read_csv(tmp_path / "folded.csv")} == {"beyonc\u00e9", "abba"}


# ------------------------------------------------------------------ 7c. reading catalogs exactly


def test_carriage_return_in_a_file_name_survives_the_catalog(tmp_path):
    odd = write_audio(tmp_path / "two\rlines.wav")
    Catalog([Track("t1", str(odd))]).write_csv(tmp_path / "cat.csv")
    back = from_csv(tmp_path / "cat.csv")  # checks the file exists
    assert back[0].path == str(odd)


def test_repeated_header_column_is_refused(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text("track_id,path,artist,album,artist\nt1,a.wav,Real Artist,X,Other\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"cat\.csv: column 'artist' appears 2 times"):
        read_csv(path)


@pytest.mark.parametrize("value", ["inf", "-inf", "1e999", "nan", "-1", "Infinity"])
def test_duration_must_be_finite_and_not_negative(tmp_path, value):
    path = tmp_path / "cat.csv"
    path.write_text(f"track_id,path,duration\nt1,a.wav,1.5\nt2,b.wav,{value}\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=rf"cat\.csv:3 \(track t2\): duration '{value}'"):
        read_csv(path)


def test_catalog_rewritten_into_another_folder_still_finds_its_audio(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_audio(tmp_path / "in" / "audio" / "a.wav")
    (tmp_path / "in" / "cat.csv").write_text("track_id,path,artist\nt1,audio/a.wav,A\n", encoding="utf-8")
    assert main(["-q", "catalog", "csv", "in/cat.csv", "-o", "other/out.csv"]) == 0
    assert Path(read_csv("other/out.csv")[0].path).samefile(tmp_path / "in" / "audio" / "a.wav")
    assert main(["-q", "prepare", "other/out.csv", "-o", "store", "--workers", "0"]) == 0
    assert "1 tracks stored (1 new), 0 unusable" in capsys.readouterr().out
    assert FeatureStore(tmp_path / "store").track_ids == ["t1"]
