"""The essen corpus: Essen Folksong Collection books, label = region, rendered like the folk tunes."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data.corpus import CORPORA, essen, folk, list_corpora, render, tools
from musicrep.errors import CorpusError

HAN1 = """
X:1
T: Renmin gongshe shizai hao
N: C0002
O: China, Shaanxi, Zizhou
R: Xiaodiao
M: 2/4
L: 1/16
K: C
d4A2c2 | d4d4 | A3cd2g2 | c2A2G4
A3cd2g2 | d2c4A2 | c3AG2E2 | D8

X:2
T: Menghai ge
N: C0100
O: Yunnan, Menghai
M: 2/4
L: 1/16
K: F
c4c4 | f2c4B2 | G2c2_E2F2 | G8
c4c4 | f2c4B2 | G2c2_E2F2 | G8
"""
LUX = """
X:1
T: De Wirt
N: L0001
O: Mitteleuropa, Luxemburg, Trotten
M: 3/4
L: 1/8
K: G
D2 | G2B2d2 | c2A2F2 | G4B2 | A4
D2 | G2B2d2 | c2A2F2 | G6 | z4
"""
LOT = """
X:1
T: Der Vorwirt
N: D0001
O: Lothringen, Altripp
M: 3/8
L: 1/8
K: G
D | G2B | G2c | B2A | G2
D | G2B | A2c | B2G | A2
"""
ERK10 = """
X:1
T: Es freit ein wilder Wassermann
N: E0001
O: Europa, Mitteleuropa, Deutschland, Schlesien
M: 2/4
L: 1/16
K: F
C2 | F2F2F2G2 | A2G2F4 | A2A2A2B2 | c3BA2
F2 | f4fed2 | c4z2 | d2B2G2B2 | c2A2F2

X:2
T: Der Vorwirt
N: E0002
O: Mitteleuropa, Deutschland / Frankreich, Lothringen, Saarburg
M: 3/8
L: 1/8
K: G
D | G2B | G2c | B2A | G2

X:3
T: Ein Schweizer Lied
N: E0003
O: Europa, Mitteleuropa, Schweiz
M: 2/4
L: 1/16
K: G
G4B4 | d4B4 | c4A4 | G8

X:4
T: Ohne Herkunft
N: E0004
M: 2/4
L: 1/16
K: F
C2 | F2F2F2G2 | A2G2F4 | A2A2A2B2 | c3BA2
F2 | f4fed2 | c4z2 | d2B2G2B2 | c2A2F4

X:5
T: Kurz
N: E0005
O: Europa, Mitteleuropa, Deutschland
M: 2/4
L: 1/16
K: C
c2e2 |
"""
BOOKS = {"han1": HAN1, "lux": LUX, "lot": LOT, "erk10": ERK10}


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    """A music21-style corpus folder: every book of the corpus, the four above with tunes, the others empty."""
    folder = tmp_path / "corpus" / essen.FOLDER
    folder.mkdir(parents=True)
    for stem in (s for books in essen.REGIONS.values() for s in books):
        (folder / f"{stem}.abc").write_text(BOOKS.get(stem, ""), encoding="utf-8")
    return tmp_path / "corpus"


def _by_title(tunes):
    return {(t.book, t.title): t for t in tunes}


def test_region_per_book_and_origin_rule(corpus_dir):
    tunes = essen.load_tunes(corpus_dir=corpus_dir)
    labels = {key: t.tune_type for key, t in _by_title(tunes).items()}
    assert labels == {
        ("han1.abc", "Renmin gongshe shizai hao"): "China",
        ("han1.abc", "Menghai ge"): "China",  # single-region book: its O: is not checked
        ("lux.abc", "De Wirt"): "Luxembourg",
        ("lot.abc", "Der Vorwirt"): "Lorraine",
        ("erk10.abc", "Es freit ein wilder Wassermann"): "Germany",
        ("erk10.abc", "Der Vorwirt"): "",  # a German book's tune from Lorraine: left out
        ("erk10.abc", "Ein Schweizer Lied"): "",  # O: does not name Deutschland
        ("erk10.abc", "Ohne Herkunft"): "Germany",  # no O:: the book's region
        ("erk10.abc", "Kurz"): "Germany",
    }
    assert [t.tune_id for t in tunes[:2]] == ["essen-han1-1", "essen-han1-2"]
    assert {t.collection for t in tunes} == {essen.FOLDER}
    assert essen.book_region("ballad50.abc") == "Germany" and essen.book_region("folkHaydn.abc") == ""
    assert essen.source_name("erk30.abc") == essen.SOURCES["erk"]
    assert essen.origin(ERK10) == "Europa, Mitteleuropa, Deutschland, Schlesien"


def test_missing_book_is_a_clear_error(corpus_dir):
    (corpus_dir / essen.FOLDER / "lot.abc").unlink()
    with pytest.raises(CorpusError, match="lot.abc"):
        essen.load_tunes(corpus_dir=corpus_dir)


def test_groups_join_variants_across_books_and_never_split(corpus_dir):
    tunes = essen.load_tunes(corpus_dir=corpus_dir)
    groups = folk.tune_groups(tunes)  # over all tunes read, those left out included
    t = _by_title(tunes)
    lorraine, german_variant = t[("lot.abc", "Der Vorwirt")], t[("erk10.abc", "Der Vorwirt")]
    assert groups[lorraine.tune_id] == groups[german_variant.tune_id]  # same title, two books
    same_notes = t[("erk10.abc", "Es freit ein wilder Wassermann")], t[("erk10.abc", "Ohne Herkunft")]
    assert groups[same_notes[0].tune_id] == groups[same_notes[1].tune_id]  # same opening notes, other title
    for seed in range(20):
        splits: dict[str, set] = {}
        for tune in tunes:
            splits.setdefault(groups[tune.tune_id], set()).add(folk.assign_split(groups[tune.tune_id], seed=seed))
        assert all(len(s) == 1 for s in splits.values())


def test_max_per_class_subsample_is_seeded_and_stable(corpus_dir):
    tunes = essen.load_tunes(corpus_dir=corpus_dir)
    chosen, dropped = essen.select_regions(tunes, max_per_class=1, min_class_count=1, seed=0)
    assert [t.tune_id for t in chosen] == [t.tune_id for t in
                                           essen.select_regions(tunes, max_per_class=1, min_class_count=1, seed=0)[0]]
    assert Counter(t.tune_type for t in chosen) == {"China": 1, "Germany": 1, "Lorraine": 1, "Luxembourg": 1}
    assert dropped["O: outside the region (Germany book)"] == 2
    assert dropped["over max_per_class (Germany)"] == 2 and dropped["over max_per_class (China)"] == 1
    picks = {tuple(t.tune_id for t in essen.select_regions(tunes, max_per_class=1, min_class_count=1, seed=s)[0])
             for s in range(12)}
    assert len(picks) > 1  # the seed decides the subsample
    # a larger max_per_class keeps the smaller one's choice (same seeded order per region)
    bigger, _ = essen.select_regions(tunes, max_per_class=2, min_class_count=1, seed=0)
    assert {t.tune_id for t in chosen} <= {t.tune_id for t in bigger}
    rare, dropped = essen.select_regions(tunes, max_per_class=None, min_class_count=2, seed=0)
    assert {t.tune_type for t in rare} == {"China", "Germany"} and dropped["rare type 'Lorraine'"] == 1


def test_registry_and_mini_selection_has_four_regions():
    assert {"essen", "essen-mini"} <= set(list_corpora())
    assert CORPORA["essen"].options["max_per_class"] == 400 and CORPORA["essen-mini"].options["max_per_class"] == 30
    pytest.importorskip("music21")
    tunes = essen.load_tunes()
    regions = Counter(t.tune_type for t in tunes if t.tune_type)
    assert set(regions) == {"China", "Luxembourg", "Lorraine", "Germany"}
    assert regions["China"] == 1224 and regions["Luxembourg"] == 614 and regions["Lorraine"] == 504
    assert 4500 < regions["Germany"] < 6100
    for name in ("essen-mini", "essen"):
        n = CORPORA[name].options["max_per_class"]
        chosen, _ = essen.select_regions(tunes, max_per_class=n, min_class_count=50, seed=0)
        assert Counter(t.tune_type for t in chosen) == {r: n for r in regions}
        groups = folk.tune_groups(tunes)
        splits = Counter(folk.assign_split(groups[t.tune_id], seed=0) for t in chosen)
        assert splits["train"] > splits["valid"] > 0 and splits["test"] > 0


def _render_tools():
    pytest.importorskip("fluidsynth")
    try:
        tools.find_soundfont()
    except CorpusError:
        pytest.skip("no soundfont")


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abc2midi not installed")
def test_essen_render_for_real(corpus_dir, tmp_path):
    _render_tools()
    tunes = essen.load_tunes(corpus_dir=corpus_dir)
    tracks, skipped, info = essen.build(out_dir=tmp_path / "out", tunes=tunes, min_class_count=1, min_seconds=3.0,
                                        workers=1)
    assert sorted(t.genre for t in tracks) == ["China", "China", "Germany", "Germany", "Lorraine", "Luxembourg"]
    reasons = {s["source"]: s["reason"] for s in skipped}
    assert reasons["music21:essenFolksong/erk10.abc#X:5"] == "shorter than 3 s"  # "Kurz": two notes
    assert {s["source"]: s["count"] for s in skipped if "count" in s} == {"O: outside the region (Germany book)": 2}
    assert info["tunes_considered"] == len(tunes)
    groups = folk.tune_groups(tunes)
    for t in tracks:
        y, sr = sf.read(str(tmp_path / "out" / t.path))
        assert sr == 22050 and y.ndim == 1 and 3.0 < len(y) / sr < 30 and 0.5 < np.abs(y).max() <= 0.91
        assert t.artist == essen.source_name(t.extra["source"].split("/")[1].split("#")[0])
        assert t.album.startswith(t.artist) and t.extra["license"] == essen.LICENSE
        assert t.extra["tune_group"] == groups[t.track_id]
        assert t.extra["split"] == folk.assign_split(groups[t.track_id], seed=0)
        assert int(t.extra["gm_program"]) in render.PROGRAMS
    # the same tunes render the same way as the folk tunes would: instrument and tempo from (seed, tune id)
    for t in tracks:
        program, tempo = render.render_choice(t.track_id, seed=0, tempo_jitter=0.1)
        assert (t.extra["gm_program"], t.extra["tempo_factor"]) == (str(program), f"{tempo:.3f}")
    # two processes give the same catalog and audio
    pooled, _, _ = essen.build(out_dir=tmp_path / "pooled", tunes=tunes, min_class_count=1, min_seconds=3.0, workers=2)
    assert [t.as_row() for t in pooled] == [t.as_row() for t in tracks]
    for t in tracks:
        np.testing.assert_array_equal(sf.read(str(tmp_path / "pooled" / t.path))[0],
                                      sf.read(str(tmp_path / "out" / t.path))[0])


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abc2midi not installed")
def test_essen_renders_one_music21_tune_per_region(tmp_path):
    _render_tools()
    pytest.importorskip("music21")
    tracks, skipped, _ = essen.build(out_dir=tmp_path, max_per_class=1, workers=1)
    assert sorted(t.genre for t in tracks) == ["China", "Germany", "Lorraine", "Luxembourg"]
    assert not [s for s in skipped if "count" not in s], skipped  # none failed or came out short
    assert all(t.extra["source"].startswith("music21:essenFolksong/") for t in tracks)
