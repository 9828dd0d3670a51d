"""The built-in corpus builder on tiny fixtures made here (no network).

Game soundtracks: a fake unpacked package tree with tagged/untagged Vorbis and WAV
files, a game metadata file, a debian/copyright naming one file, a music archive
(ufoai-style) and a real ProTracker module whose sample names credit a composer.
Folk: a handful of two-bar ABC tunes rendered for real (abc2midi + FluidSynth).
"""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrep.data.catalog import read_csv
from musicrep.data.corpus import (
    attribution,
    build_corpus,
    folk,
    games,
    list_corpora,
    render,
    tools,
    write_corpus,
)
from musicrep.errors import CorpusError

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
SR = 8000


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _ogg(path: Path, seconds: float, **tags) -> None:
    from mutagen.oggvorbis import OggVorbis

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), _tone(seconds), SR, format="OGG", subtype="VORBIS")
    if tags:
        ogg = OggVorbis(str(path))
        for k, v in tags.items():
            ogg[k] = v
        ogg.save()


def _wav(path: Path, seconds: float, freq: float = 330.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), _tone(seconds, freq), SR)


def _mod(path: Path, *, sample_name: str, patterns: int = 5) -> None:
    """A ProTracker module: one looped square-wave sample, a note every 4 rows,
    one pattern played ``patterns`` times (7.68 s each at speed 6 / 125 BPM)."""
    header = b"fixture tune".ljust(20, b"\0")
    header += sample_name.encode().ljust(22, b"\0")[:22] + struct.pack(">HBBHH", 1000, 0, 64, 0, 1000)
    for _ in range(30):
        header += b"\0" * 22 + struct.pack(">HBBHH", 0, 0, 0, 0, 1)
    header += bytes([patterns, 127]) + bytes([0] * 128) + b"M.K."
    rows = b""
    for row in range(64):
        cell = bytes([0x01, 0xAC, 0x10, 0x00]) if row % 4 == 0 else b"\0" * 4
        rows += cell + b"\0" * 12
    sample = bytes((40 if (i // 16) % 2 else 216) for i in range(2000))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + rows + sample)


def _it(path: Path, *, rv: int, rp: int) -> None:
    """An Impulse Tracker module: one instrument with random volume (``rv``, percent)
    and panning (``rp``) variation over a looped square wave, a note every 4 rows of
    one 64-row pattern (7.68 s at speed 6 / 125 BPM)."""
    orders = bytes([0, 255])
    header = bytearray(0xC0)
    header[:4] = b"IMPM"
    header[4:14] = b"random fx"
    struct.pack_into("<4H2H2H", header, 0x20, len(orders), 1, 1, 1, 0x0214, 0x0214, 0x0D, 0)
    header[0x30:0x36] = bytes([128, 48, 6, 125, 128, 0])
    header[0x40:0x80] = bytes([32] * 64)
    header[0x80:0xC0] = bytes([64] * 64)
    table = 0xC0 + len(orders)
    ins_at = table + 12
    smp_at = ins_at + 554
    pat_at = smp_at + 0x50
    rows = b"".join(bytes([0x81, 0x03, 60, 1, 0]) if r % 4 == 0 else b"\0" for r in range(64))
    data_at = pat_at + 8 + len(rows)
    ins = bytearray(554)
    ins[:4] = b"IMPI"
    ins[0x18:0x1C] = bytes([128, 32 | 128, rv, rp])  # global volume, default pan unused, RV, RP
    ins[0x1E] = 1
    for note in range(120):
        ins[0x40 + 2 * note:0x42 + 2 * note] = bytes([note, 1])
    smp = bytearray(0x50)
    smp[:4] = b"IMPS"
    smp[0x11:0x14] = bytes([64, 0x11, 64])  # global volume, flags (sample + loop), volume
    smp[0x2E] = 1  # signed samples
    struct.pack_into("<4I", smp, 0x30, 64, 0, 64, 8363)
    struct.pack_into("<I", smp, 0x48, data_at)
    pattern = struct.pack("<HH4x", len(rows), 64) + rows
    sample = bytes((40 if (i // 16) % 2 else 216) for i in range(64))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(header) + orders + struct.pack("<3I", ins_at, smp_at, pat_at)
                     + bytes(ins) + bytes(smp) + pattern + sample)


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fakegame

Files: *
Copyright: 2001-2009 The Fakegame Team
License: GPL-2+

Files: data/music/special.ogg
Copyright: 2010 Jane Roe
License: CC-BY-SA-3.0
"""


@pytest.fixture(scope="module")
def game_trees(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("unpacked")
    fake = root / "fakegame-data"
    music = fake / "usr/share/games/fakegame/data/music"
    _ogg(music / "tagged.ogg", 32, artist="joseph g. toscano (zhaytee)", album="Fake OST", title="Tagged Song")
    _ogg(music / "special.ogg", 31)
    _ogg(music / "short.ogg", 5, artist="Somebody")
    _wav(music / "untagged.wav", 31)
    (music / "corrupt.ogg").write_bytes(b"OggS" + b"\x13" * 500)
    _wav(fake / "usr/share/games/fakegame/sounds/boom.wav", 40)  # not a music folder: ignored
    album = fake / "usr/share/games/fakegame/music/albums/first"
    _ogg(album / "t1.ogg", 33)
    (album / "album.json").write_text(json.dumps(
        {"title": "First Album", "author": "Zhaytee", "tracks": [{"filename": "t1.ogg", "title": "Opening"}]}))
    _mod(music / "chip.mod", sample_name="music by Zhaytee")
    (fake / "usr/share/doc/fakegame-data").mkdir(parents=True)
    (fake / "usr/share/doc/fakegame-data/copyright").write_text(COPYRIGHT)

    ufo = root / "ufoai-music"
    pk3 = ufo / "usr/share/games/ufoai/base/0music.pk3"
    pk3.parent.mkdir(parents=True)
    _wav(root / "David01.wav", 31, freq=220)
    with zipfile.ZipFile(pk3, "w") as zf:
        zf.write(root / "David01.wav", "music/David01.wav")
        zf.writestr("textures/readme.txt", "not music")
    return {"fakegame-data": fake, "ufoai-music": ufo}


@pytest.fixture(scope="module")
def game_build(game_trees, tmp_path_factory):
    out = tmp_path_factory.mktemp("games")
    tracks, skipped = games.build_from_trees(game_trees, out_dir=out, workers=2)
    return out, tracks, skipped


# --- attribution ---------------------------------------------------------------------

def test_aliases_map_spellings_to_one_name():
    for spelling in ("Zhaytee", "joseph toscano", "Joseph G. Toscano (Zhaytee)", "JOSEPH TOSCANO"):
        assert attribution.normalize_artist(spelling) == "Joseph Toscano"
    assert attribution.normalize_artist("Reg & Zbb 01") == "Reg & Zbb"
    assert attribution.normalize_artist("yuri r. sucupira <yuri@x.com>") == "Yuri R. Sucupira"
    for junk in ("", "(?)", "O.o.o.o.o", "The UFO:AI Team", "Unknown"):
        assert attribution.normalize_artist(junk) == ""


def test_module_text_patterns():
    assert attribution.from_module_text("pingus - level", message="written and tracked by\njoseph toscano\n(c)2000") == "Joseph Toscano"
    assert attribution.from_module_text("MANIA by Mordred", message="") == "Jordan Tuzsuzov"
    assert attribution.from_module_text("Stars", message="Ambient -\nThomas A. Drexl\n") == "Thomas Drexl"
    assert attribution.from_module_text("x", message="Alexel / RealTech\n\n") == "Alexandre Liverneaux"
    # a converter's credit is not the composer; "music from" wins over it
    assert attribution.from_module_text("t", message="music from reg\n Converted with Pro-Wizard by Gryzor") == "Reg & Zbb"
    assert attribution.from_module_text("Song 6", message="Musicbox.wav\nMusicbox.wav") == ""


def test_attribution_order():
    stanzas = attribution.parse_dep5(COPYRIGHT)
    kw = dict(package="ufoai-music", relpath="data/music/David01.ogg", stanzas=stanzas)
    assert attribution.attribute(tags={"artist": ["Ann Tag"]}, metadata_artist="Meta", **kw) == attribution.Attribution("Ann Tag", "tag")
    assert attribution.attribute(metadata_artist="Meta Person", module_message="by Mod Person", **kw).source == "metadata"
    assert attribution.attribute(module_message="music by Mod Person", **kw) == attribution.Attribution("Mod Person", "module")
    assert attribution.attribute(**kw) == attribution.Attribution("David Reeves", "filename")
    special = dict(package="fakegame-data", relpath="usr/share/data/music/special.ogg", stanzas=stanzas)
    assert attribution.attribute(**special) == attribution.Attribution("Jane Roe", "copyright")
    # "Files: *" names the team, which is not a composer: unknown
    other = dict(package="fakegame-data", relpath="usr/share/data/music/other.ogg", stanzas=stanzas)
    assert attribution.attribute(**other) == attribution.Attribution("", "unknown")
    assert attribution.attribute(package="asc-music", relpath="x/music/a.mp3").artist == "Michael Kievernagel"


# --- soundtrack corpus -----------------------------------------------------------------

@needs_ffmpeg
def test_games_catalog_from_unpacked_trees(game_build):
    out, tracks, skipped = game_build
    by_name = {Path(t.extra["source"]).name.split("!")[-1].split("/")[-1]: t for t in tracks}
    assert sorted(by_name) == ["David01.wav", "chip.mod", "special.ogg", "t1.ogg", "tagged.ogg", "untagged.wav"]
    assert (by_name["tagged.ogg"].artist, by_name["tagged.ogg"].extra["artist_source"]) == ("Joseph Toscano", "tag")
    assert by_name["tagged.ogg"].album == "Fake OST" and by_name["tagged.ogg"].title == "Tagged Song"
    assert (by_name["t1.ogg"].artist, by_name["t1.ogg"].album, by_name["t1.ogg"].title) == (
        "Joseph Toscano", "First Album", "Opening")
    assert (by_name["chip.mod"].artist, by_name["chip.mod"].extra["artist_source"]) == ("Joseph Toscano", "module")
    assert (by_name["special.ogg"].artist, by_name["special.ogg"].extra["license"]) == ("Jane Roe", "CC-BY-SA-3.0")
    assert by_name["untagged.wav"].artist == "" and by_name["untagged.wav"].extra["license"] == "GPL-2+"
    assert by_name["David01.wav"].artist == "David Reeves"
    assert by_name["David01.wav"].extra["source"] == "ufoai-music:usr/share/games/ufoai/base/0music.pk3!music/David01.wav"
    assert by_name["untagged.wav"].album == "fakegame-data"  # no tag, no metadata, no table entry
    reasons = {Path(s["source"]).name: s["reason"] for s in skipped}
    assert reasons["short.ogg"] == "shorter than 30 s"
    assert reasons["corrupt.ogg"].startswith("error")
    for t in tracks:  # uniform audio that soundfile reads
        info = sf.info(str(out / t.path))
        assert (info.samplerate, info.channels, info.format) == (22050, 1, "FLAC")
        assert t.duration >= 30 and abs(info.frames / info.samplerate - t.duration) < 1e-3
    assert 36 < by_name["chip.mod"].duration < 40  # 5 x 64 rows x 0.12 s = 38.4 s


@needs_ffmpeg
def test_games_rebuild_reuses_audio_and_writes_catalog(game_build, game_trees):
    out, tracks, skipped = game_build
    stamp = {t.track_id: (out / t.path).stat().st_mtime_ns for t in tracks}
    again, _ = games.build_from_trees(game_trees, out_dir=out, workers=1)
    assert [t.track_id for t in again] == [t.track_id for t in tracks]
    assert all((out / t.path).stat().st_mtime_ns == stamp[t.track_id] for t in again)
    path = write_corpus(again, out_dir=out, name="fixture", skipped=skipped, info={})
    cat = read_csv(path)
    assert len(cat) == 6 and {"license", "source", "artist_source"} <= set(cat.extra_columns)
    assert Path(cat[0].path).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["artists"]["Joseph Toscano"] == 3 and summary["tracks_without_artist"] == 1
    assert summary["skipped"]["shorter than 30 s"] == 1
    assert "Joseph Toscano" in (out / "summary.md").read_text()


def test_derandomize_it_zeroes_random_variation_only(tmp_path):
    _it(tmp_path / "a.it", rv=50, rp=64)
    data = (tmp_path / "a.it").read_bytes()
    fixed = games.derandomize_it(data)
    changed = [i for i in range(len(data)) if data[i] != fixed[i]]
    ins_at = struct.unpack_from("<I", data, 0xC2)[0]
    assert changed == [ins_at + 0x1A, ins_at + 0x1B] and fixed[ins_at + 0x1A:ins_at + 0x1C] == b"\0\0"
    assert games.derandomize_it(b"not a module") == b"not a module"
    assert games.derandomize_it(data[:0xC1]) == data[:0xC1]  # truncated: left alone


@needs_ffmpeg
def test_modules_with_random_effects_render_the_same_twice(tmp_path):
    # libopenmpt draws random volume/pan variation from an unseeded generator: two
    # builds of the corpus gave other audio for such modules (and other tables)
    _it(tmp_path / "fx.it", rv=50, rp=64)
    raw = [games._decode_pcm(tmp_path / "fx.it", sr=22050) for _ in range(2)]
    assert len(raw[0]) > 22050 * 5 and not np.array_equal(*raw)  # the fixture is random as rendered
    games.transcode(tmp_path / "fx.it", dest=tmp_path / "one.flac")
    games.transcode(tmp_path / "fx.it", dest=tmp_path / "two.flac")
    one, sr = sf.read(str(tmp_path / "one.flac"), dtype="int16")
    assert sr == 22050 and np.abs(one).max() > 1000
    np.testing.assert_array_equal(sf.read(str(tmp_path / "two.flac"), dtype="int16")[0], one)


def test_a_module_that_stays_random_is_refused(tmp_path, monkeypatch):
    renders = iter([np.zeros(100, np.int16), np.ones(100, np.int16)])
    monkeypatch.setattr(games, "_decode_pcm", lambda path, sr: next(renders))
    _mod(tmp_path / "x.mod", sample_name="s")
    with pytest.raises(CorpusError, match="not reproducible"):
        games.render_module(tmp_path / "x.mod")

# --- folk corpus -----------------------------------------------------------------------


BOOK_A = """X:1
T:The Green Meadow
R:reel
M:4/4
L:1/8
K:D
DFAd fdAF|GBdg fdAF:|

X:2
T:Kitty's Jig
M:6/8
L:1/8
K:G
GAB cBA|GBd g2e:|

X:3
T:Rare Dance
R:polka
M:2/4
L:1/8
K:A
AB cd|ec A2|
"""
BOOK_B = """X:7
T:Green Meadow, The
R:Reel
M:4/4
L:1/8
K:D
d2fd AFDF|EFGA B4|

X:8
T:Another Name Entirely
R:jig
M:6/8
L:1/8
K:G
GAB cBA|GBd g2e:|
"""


def _tunes():
    return (folk.parse_abc(BOOK_A, collection="oneills1850", book="a.abc")
            + folk.parse_abc(BOOK_B, collection="ryansMammoth", book="b.abc"))


def test_tune_types_titles_and_groups():
    tunes = _tunes()
    assert [(t.title, t.tune_type) for t in tunes] == [
        ("The Green Meadow", "reel"), ("Kitty's Jig", "jig"), ("Rare Dance", "polka"),
        ("The Green Meadow", "reel"), ("Another Name Entirely", "jig")]
    groups = folk.tune_groups(tunes)
    ids = [t.tune_id for t in tunes]
    assert groups[ids[0]] == groups[ids[3]]  # same title across books
    assert groups[ids[1]] == groups[ids[4]]  # same opening notes, other title
    assert len({groups[i] for i in ids}) == 3
    assert folk.normalize_type("Slip-Jig") == "slip jig" and folk.normalize_type("double jig") == "jig"
    assert folk.type_from_title("Highland Regiment Strathspey") == "strathspey"


def test_split_and_choices_are_seeded():
    splits = [folk.assign_split(f"g{i}", seed=3) for i in range(2000)]
    assert splits == [folk.assign_split(f"g{i}", seed=3) for i in range(2000)]
    frac = {s: splits.count(s) / len(splits) for s in ("train", "valid", "test")}
    assert abs(frac["train"] - 0.8) < 0.04 and abs(frac["test"] - 0.1) < 0.03
    programs = {render.render_choice(f"t{i}", seed=0, tempo_jitter=0.1)[0] for i in range(300)}
    assert len(programs) > 20 and programs <= set(render.PROGRAMS)  # instruments vary per tune
    tempos = [render.render_choice(f"t{i}", seed=0, tempo_jitter=0.1)[1] for i in range(300)]
    assert 0.9 <= min(tempos) < 0.95 and 1.05 < max(tempos) <= 1.1
    assert render.render_choice("t1", seed=0, tempo_jitter=0.1) == render.render_choice("t1", seed=0, tempo_jitter=0.1)


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abc2midi not installed")
def test_folk_render_for_real(tmp_path):
    pytest.importorskip("fluidsynth")
    tracks, skipped, info = folk.build(out_dir=tmp_path, tunes=_tunes(), min_class_count=2,
                                       min_seconds=1.0, workers=1)
    assert sorted(t.genre for t in tracks) == ["jig", "jig", "reel", "reel"]  # polka: rare, dropped
    assert any(s["source"] == "rare type 'polka'" for s in skipped)
    by_group: dict[str, set] = {}
    for t in tracks:
        by_group.setdefault(t.extra["tune_group"], set()).add(t.extra["split"])
        y, sr = sf.read(str(tmp_path / t.path))
        assert sr == 22050 and y.ndim == 1 and 1.0 < len(y) / sr < 20 and 0.5 < np.abs(y).max() <= 0.91
        assert t.artist in folk.COLLECTIONS.values() and t.extra["source"].startswith("music21:")
    assert all(len(s) == 1 for s in by_group.values())  # a tune never straddles splits
    # two synthesizer processes render the same catalog and the same audio
    pooled, _, _ = folk.build(out_dir=tmp_path / "pooled", tunes=_tunes(), min_class_count=2, min_seconds=1.0, workers=2)
    assert [t.as_row() for t in pooled] == [t.as_row() for t in tracks]
    for t in tracks:
        np.testing.assert_array_equal(sf.read(str(tmp_path / "pooled" / t.path))[0], sf.read(str(tmp_path / t.path))[0])
    # a rerun renders nothing new
    stamp = {t.track_id: (tmp_path / t.path).stat().st_mtime_ns for t in tracks}
    again, _, _ = folk.build(out_dir=tmp_path, tunes=_tunes(), min_class_count=2, min_seconds=1.0, workers=1)
    assert {t.track_id: (tmp_path / t.path).stat().st_mtime_ns for t in again} == stamp


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abc2midi not installed")
def test_folk_render_does_not_depend_on_what_came_before(tmp_path):
    # a pool worker renders tunes in scheduling order; a tune must sound the same
    # whether it is the process's first or follows another (reverb tails, block
    # phase, dither and voice state of a reused synthesizer made it differ)
    pytest.importorskip("fluidsynth")
    render._init_worker(str(tools.find_soundfont()))
    tunes = _tunes()
    midis = []
    for i, t in enumerate(tunes[:2]):
        folk.abc_to_midi(t.header + "\n" + t.abc, midi_path=tmp_path / f"{i}.mid")
        midis.append(tmp_path / f"{i}.mid")
    first = render.synthesize(midis[0], program=40, tempo=1.0)
    render.synthesize(midis[1], program=73, tempo=1.1)
    np.testing.assert_array_equal(render.synthesize(midis[0], program=40, tempo=1.0), first)

# --- errors and registry ------------------------------------------------------------------

def test_missing_tools_name_the_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="abcmidi"):
        tools.abc2midi()
    with pytest.raises(CorpusError, match="'ffmpeg'"):
        tools.ffmpeg()
    monkeypatch.setattr(tools, "SOUNDFONT_CANDIDATES", ())
    monkeypatch.setitem(__import__("sys").modules, "pretty_midi", None)
    monkeypatch.delenv("MUSICREP_SOUNDFONT", raising=False)
    with pytest.raises(CorpusError, match="fluid-soundfont-gm"):
        tools.find_soundfont()


def test_registry_and_unknown_name(tmp_path):
    assert {"games", "games-mini", "folk", "folk-mini"} <= set(list_corpora())
    assert len(games.MINI_PACKAGES) == 8 and set(games.MINI_PACKAGES) < set(games.FULL_PACKAGES)
    with pytest.raises(CorpusError, match="unknown corpus 'nope'"):
        build_corpus("nope", out_dir=tmp_path)


def test_cli_list(capsys):
    from musicrep.cli import main

    assert main(["corpus", "list"]) == 0
    assert "games-mini" in capsys.readouterr().out


@needs_ffmpeg
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")
def test_build_corpus_from_cached_deb_then_skips(game_trees, tmp_path, monkeypatch):
    """The whole build from a .deb already in the cache (no network), then a no-op rerun."""
    import subprocess

    from musicrep.data import corpus

    pkg_root = tmp_path / "pkg"
    shutil.copytree(game_trees["fakegame-data"], pkg_root)
    (pkg_root / "DEBIAN").mkdir()
    (pkg_root / "DEBIAN/control").write_text(
        "Package: fakegame-data\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: fixture\n")
    cache = tmp_path / "debs"
    cache.mkdir()
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(pkg_root), str(cache / "fakegame-data_1.0_all.deb")],
                   check=True, capture_output=True)
    monkeypatch.setitem(corpus.CORPORA, "fixture", corpus.CorpusSpec("games", "fixture", {"packages": ("fakegame-data",)}))
    monkeypatch.setattr(corpus.debian.tools, "require_tool",
                        lambda name, package: pytest.fail("apt-get must not run") if name == "apt-get" else shutil.which(name))
    out = tmp_path / "corpus"
    path = build_corpus("fixture", out_dir=out, cache_dir=cache, workers=2)
    cat = read_csv(path)
    assert len(cat) == 5 and (out / "DONE").is_file() and (out / "summary.md").is_file()
    assert json.loads((out / "summary.json").read_text())["build"]["download_bytes"] > 0
    before = path.stat().st_mtime_ns
    assert build_corpus("fixture", out_dir=out, cache_dir=cache) == path and path.stat().st_mtime_ns == before


def test_classical_pieces_and_selection(tmp_path):
    from musicrep.data.corpus import classical

    pal = tmp_path / "palestrina"
    pal.mkdir()
    for i, mass in enumerate(["Missa Brevis"] * 3 + ["Missa Papae Marcelli"] * 2):
        (pal / f"Kyrie_{i:02d}.krn").write_text(f"!!!COM: Palestrina\n!!!OPR: {mass}\n!!!OTL: Kyrie\n**kern\n*-\n")
    (pal / "NoWork.krn").write_text("**kern\n*-\n")  # no work named: left out
    (tmp_path / "monteverdi").mkdir()
    (tmp_path / "monteverdi/madrigal.4.2.mxl").write_bytes(b"")
    pieces = classical.find_pieces(corpus_dir=tmp_path)
    assert [(p.composer.split()[-1], p.work) for p in pieces] == [("Palestrina", "Missa Brevis")] * 3 + [
        ("Palestrina", "Missa Papae Marcelli")] * 2 + [("Monteverdi", "Madrigals, Book 4")]
    chosen = classical.select(pieces, max_per_album=2, max_albums=1, seed=0)
    assert len(chosen) == 3 and len({p.work for p in chosen if "Palestrina" in p.composer}) == 1
    assert chosen == classical.select(pieces, max_per_album=2, max_albums=1, seed=0)


def test_album_spellings_merge():
    from musicrep.data.catalog import Track

    tracks = [Track("a", "p", album="UFO: Alien Invasion"), Track("b", "p", album="Ufo: Alien Invasion"),
              Track("c", "p", album="UFO: Alien Invasion"), Track("d", "p", album="Pingus")]
    assert [t.album for t in games._merge_album_spellings(tracks)] == ["UFO: Alien Invasion"] * 3 + ["Pingus"]


def test_missing_pretty_midi_is_one_clear_error(monkeypatch):
    import sys

    from musicrep.data.corpus import tools
    from musicrep.errors import CorpusError

    monkeypatch.setitem(sys.modules, "pretty_midi", None)  # import now raises ImportError
    with pytest.raises(CorpusError, match="pretty_midi.*musicrep\\[corpus\\]"):
        tools.require_pretty_midi()


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="needs the corpus tools")
def test_classical_render_for_real(tmp_path):
    pytest.importorskip("fluidsynth")
    music21 = pytest.importorskip("music21")
    from musicrep.data.corpus import classical

    paths = sorted(Path(music21.__file__).parent.joinpath("corpus", "bach").glob("bwv1.6.mxl"))[:1]
    paths += sorted(Path(music21.__file__).parent.joinpath("corpus", "bach").glob("bwv10.7.mxl"))[:1]
    assert len(paths) == 2
    pieces = [classical.Piece(piece_id=p.stem, composer="Johann Sebastian Bach", work="Chorales", title=p.stem, path=p)
              for p in paths]
    tracks, skipped, _ = classical.build(out_dir=tmp_path, pieces=pieces, min_seconds=5.0, workers=1)
    assert not skipped, skipped
    assert len(tracks) == 2
    for t in tracks:
        assert t.artist == "Johann Sebastian Bach" and t.duration > 5.0
        audio, sr = sf.read(tmp_path / t.path if not Path(t.path).is_absolute() else t.path)
        assert sr == 22050 and np.abs(audio).max() > 0.1
