"""The ``games-full`` corpus rules on small unpacked trees written here in the real
packages' layout (no network, no audio decoded).

Each fixture quotes the lines of the real package file it imitates (games-full survey,
docs/games-full-survey.md): credit files naming tracks, a ``debian/copyright`` whose
globs carry the source tree's ``data/`` prefix, module texts with false names, a tag
that ffprobe joined with ``;``, reviewed aliases, music outside music folders, and the
duplicate rules.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from musicrep.data.catalog import Track
from musicrep.data.corpus import CORPORA, attribution, games, list_corpora, write_corpus
from musicrep.data.corpus.attribution import Attribution


def _touch(root: Path, relpath: str, data: bytes = b"x") -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _text(root: Path, relpath: str, text: str) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _describe(package: str, root: Path, relpath: str, tags: dict) -> dict:
    """Catalog fields of one file of a fixture tree, as the build gives them (tags as probed)."""
    from musicrep.data.corpus import debian

    text = debian.copyright_text(root, package=package)
    cand = games.Candidate(package, relpath, root / relpath, f"{package}:{relpath}")
    return games.describe(cand, tags=tags, copyright_text=text, stanzas=attribution.parse_dep5(text),
                          credits=attribution.read_credits(package, root=root))


TRACKBALLS_README = """Music distributed under the GPL licence:
----------------------------------------
tb_design.ogg aka. "Life by Design", by Dietrich Radel
tb_hrluebke.ogg, by M3 (Marco G\u00f6bel <goebel29@web.de>)

Music distributed under the Ethymonics Free Music Licence:
----------------------------------------------------------

c64Revival.ogg, "C64 Revival", by Paul Leach.
crazy.ogg, "Crazy" by Paul Leach.
"""

MADBOMBER_AUTHORS = """    "1812 Overture"   Composed by Pyotr Ilyich Tchaikovsky.
                      Sample from Richard Baker's <admiral@da-admiral.com>

    Title Music:      "Bizarre Jungle" by Tricoder of Project-X, 1997.
                      ftp://acid2.stack.nl/pub/skynet/music/px/

    Highscore Music:  "waterfall" by Sami I Saarnio ("Nutcase")
                      <saarnio@cc.helsinki.fi>, 1996.

    Game Musics:      "Arabian Nites" by Ander of FounDatioN Productions, 1995.
                      "Gluppobert" by Quazar of Sanxion, 1995.
"""

TUXMATH_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2001-2011 Tux4Kids
License: GPL-3+

Files: data/sounds/game*.mod data/sounds/tuxi.ogg
Copyright: 1994 various
License: Public Domain
Comment:
 Emmett Plant (emmett@sonivius.com) is the author of tuxi.ogg and released
 it into the public domain.
 They are:
  - "Beyond The Horizon", by Mystra of Stone Arts, 1994.
  - "Soft Brilliance", by Tjoppbass, 1994.

Files: data/sounds/01_rush.ogg
       data/sounds/02_on_the_edge_of_the_universe.ogg
Copyright: 2009-2010 Serberis
           2009-2010 Synthaurion
License: CC-BY-SA-3.0
Comment:
  - "Rush", by Serberis.
  - "On the Edge of the Universe", by Synthaurion.
"""

HEXAHOP_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2005-2007, Tom Beaumont <tombeaumont@yahoo.com>
License: GPL-2+

Files: data/*
Copyright: 2007, Miriam Ruiz <little_miry@yahoo.es>
           2005-2007, Tom Beaumont <tombeaumont@yahoo.com>
License: GPL-2+

Files: data/music-ending.ogg*
       data/music-game.ogg*
Copyright: remaxim
License: CC-BY-SA-3.0
"""

SUPERTUX_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2003-2020 SuperTux Devel Team
License: GPL-3+

Files: data/music/*
Copyright: Marek Moeckel <wansti@gmx.de>
License: GPL-2+
"""

PUSHOVER_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2008 Andreas Roever <roever@users.sf.net> (Code)
           2008-2018 Volker Grabsch <vog@notjusthosting.com> (Code)
           2008-2018 Roberto Lorenz (Music compositon and arrangement)
           2008-2018 Harald Radke <harryrat@postnuklear.de> (Theme graphics)
License: GPL-3+
"""

SEAHORSE_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2007, The Olde Battleaxe & Friends
                 philhassey - director, code, levels
                 tim - music, levels
                 DrPetter - backgrounds, sfx
License: GPL-2
"""

KENTA_CHO_COPYRIGHT = """Upstream Author:

    Kenta Cho <cs8k-cyu@asahi-net.or.jp>

Copyright:

    Copyright 2003 Kenta Cho

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

The Debian packaging is licensed under the GNU General Public License, version 2.
"""


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("games-full")
    out = {}

    tb = out["trackballs-data"] = root / "trackballs-data"
    _text(tb, "usr/share/games/trackballs/music/README", TRACKBALLS_README)
    for name in ("c64revival.ogg", "tb_design.ogg", "tb_hrluebke.ogg", "crazy.ogg"):
        _touch(tb, f"usr/share/games/trackballs/music/{name}")

    mb = out["madbomber-data"] = root / "madbomber-data"
    _text(mb, "usr/share/doc/madbomber-data/AUTHORS.txt", MADBOMBER_AUTHORS)
    for name in ("bizjung.it", "fdn-arab.s3m", "gluppobe.mod", "waterfal.mod"):
        _touch(mb, f"usr/share/games/madbomber/music/{name}")

    cl = out["circuslinux-data"] = root / "circuslinux-data"
    _text(cl, "usr/share/doc/circuslinux-data/AUTHORS",
          '  Music:              "Klovnin Arki," "Hi Score," "Best-In" and "Finally"\n'
          "                      by Jarkko Rotsten <roz@sci.fi>\n")
    _touch(cl, "usr/share/games/circuslinux/data/music/hiscore.mod")

    pm = out["powermanga-data"] = root / "powermanga-data"
    _text(pm, "usr/share/games/powermanga/texts/about_en.txt",
          "0,SOUND,      0,EFFECTS,     1,DAVID,       1,IGREJA\n"
          "0,MUSICS BY,  1,MICHEL,      1,DOGNIAUX\n"
          "0,(c) 2015,   1,TLK,         1,GAMES\n")
    _touch(pm, "usr/share/games/powermanga/sound/handheld_console/music_menu.ogg")
    _touch(pm, "usr/share/games/powermanga/sound/handheld_console/sound_explosion.ogg")

    hw = out["hedgewars-data"] = root / "hedgewars-data"
    _text(hw, "usr/share/games/hedgewars/Data/Music/credits.txt",
          "City.ogg=HSR <http://elhombresinremedio.com>\nNature.ogg=John Dum\nPirate.ogg=Jonatan Nilsson\n"
          'sdmusic.ogg=Kevin MacLeod - "Hitman" [sheepluva edit]\n')
    for name in ("pirate.ogg", "sdmusic.ogg", "Nature.ogg", "Art.ogg"):
        _touch(hw, f"usr/share/games/hedgewars/Data/Music/{name}")

    tm = out["tuxmath-data"] = root / "tuxmath-data"
    _text(tm, "usr/share/doc/tuxmath-data/copyright", TUXMATH_COPYRIGHT)
    for name in ("game.mod", "game3.mod", "01_rush.ogg", "02_on_the_edge_of_the_universe.ogg", "tuxi.ogg"):
        _touch(tm, f"usr/share/tuxmath/sounds/{name}")

    hx = out["hex-a-hop-data"] = root / "hex-a-hop-data"
    _text(hx, "usr/share/doc/hex-a-hop-data/copyright", HEXAHOP_COPYRIGHT)
    _touch(hx, "usr/share/games/hex-a-hop/hex-a-hop/music-game.ogg")
    _touch(hx, "usr/share/games/hex-a-hop/hex-a-hop/sound-crack.ogg")

    st = out["supertux-data"] = root / "supertux-data"
    _text(st, "usr/share/doc/supertux-data/copyright", SUPERTUX_COPYRIGHT)
    _touch(st, "usr/share/games/supertux2/music/forest/forest_theme.ogg")

    po = out["pushover-data"] = root / "pushover-data"
    _text(po, "usr/share/doc/pushover-data/copyright", PUSHOVER_COPYRIGHT)
    _touch(po, "usr/share/pushover/themes/aztec.ogg")

    sh = out["seahorse-adventures"] = root / "seahorse-adventures"
    _text(sh, "usr/share/doc/seahorse-adventures/copyright", SEAHORSE_COPYRIGHT)
    _touch(sh, "usr/share/games/seahorse-adventures/data/music/title.ogg")

    kc = out["noiz2sa-data"] = root / "noiz2sa-data"
    _text(kc, "usr/share/doc/noiz2sa-data/copyright", KENTA_CHO_COPYRIGHT)
    _touch(kc, "usr/share/games/noiz2sa/sounds/stg1.ogg")

    nx = out["nexuiz-music"] = root / "nexuiz-music"
    pk3 = nx / "usr/share/games/nexuiz/data/music.pk3"
    pk3.parent.mkdir(parents=True)
    with zipfile.ZipFile(pk3, "w") as zf:
        zf.writestr("sound/cdtracks/beast-of-insanity.ogg", b"ogg 1")
        zf.writestr("sound/cdtracks/thunder.ogg", b"ogg 2")

    ar = out["ardentryst"] = root / "ardentryst"
    _touch(ar, "usr/share/games/ardentryst/Music/theme1.ogg")
    _touch(ar, "usr/share/games/ardentryst/Music/Sounds/AMB_Intro_1.ogg")
    return out


# --- credit files (source ``readme``) ------------------------------------------------------

def test_readme_names_files_case_insensitively_and_skips_quoted_titles(trees):
    root = trees["trackballs-data"]
    music = "usr/share/games/trackballs/music/"
    got = {name: _describe("trackballs-data", root, music + name, {})
           for name in ("c64revival.ogg", "tb_design.ogg", "tb_hrluebke.ogg", "crazy.ogg")}
    assert {n: (d["artist"], d["artist_source"]) for n, d in got.items()} == {
        "c64revival.ogg": ("Paul Leach", "readme"),  # README: 'c64Revival.ogg, ...'
        "tb_design.ogg": ("Dietrich Radel", "readme"),  # not 'Design' from "Life by Design"
        "tb_hrluebke.ogg": ("Marco G\u00f6bel", "readme"),  # 'by M3 (Marco Göbel ...)': alias m3
        "crazy.ogg": ("Paul Leach", "readme"),
    }
    assert got["crazy.ogg"]["album"] == "Trackballs"


def test_readme_titles_win_over_module_texts(trees):
    root = trees["madbomber-data"]
    music = "usr/share/games/madbomber/music/"
    cases = {
        "bizjung.it": ({"title": "BiZARRE JuNGLE"}, "Tricoder"),
        "fdn-arab.s3m": ({"title": "Arabian Nites", "comment": "FDN Productions\nBy: \u03a3nder"}, "Ander"),
        "gluppobe.mod": ({"title": "Gluppobert", "comment": '" Gluppobert " by Quazar in 1995'}, "Quazar"),
        "waterfal.mod": ({"title": "waterfall", "comment": "!composed by nutcase!"}, "Sami I Saarnio"),
    }
    for name, (tags, artist) in cases.items():
        got = _describe("madbomber-data", root, music + name, tags)
        assert (got["artist"], got["artist_source"]) == (artist, "readme"), name
    # the "1812 Overture ... Composed by" line credits a sample, not a title of the game
    credits = attribution.read_credits("madbomber-data", root=root)
    assert "1812overture" not in credits.by_title and credits.package == ("", "")


def test_readme_credit_for_the_whole_music(trees):
    got = _describe("circuslinux-data", trees["circuslinux-data"],
                    "usr/share/games/circuslinux/data/music/hiscore.mod", {"title": "circus hiscore"})
    assert (got["artist"], got["artist_source"]) == ("Jarkko Rotsten", "readme")
    got = _describe("powermanga-data", trees["powermanga-data"],
                    "usr/share/games/powermanga/sound/handheld_console/music_menu.ogg", {})
    assert (got["artist"], got["artist_source"]) == ("Michel Dogniaux", "readme")


def test_hedgewars_credits_are_metadata_and_tags_still_win(trees):
    root = trees["hedgewars-data"]
    music = "usr/share/games/hedgewars/Data/Music/"
    pirate = _describe("hedgewars-data", root, music + "pirate.ogg", {})
    assert (pirate["artist"], pirate["artist_source"]) == ("Jonatan Nilsson", "metadata")  # 'Pirate.ogg=...'
    assert _describe("hedgewars-data", root, music + "sdmusic.ogg", {})["artist"] == "Kevin MacLeod"
    # 'Nature.ogg=John Dum' but the file is tagged 'Tiyuri' (alias left out: REVIEW in the survey)
    assert _describe("hedgewars-data", root, music + "Nature.ogg", {"artist": "Tiyuri"})["artist"] == "Tiyuri"
    assert _describe("hedgewars-data", root, music + "Art.ogg", {})["artist_source"] == "unknown"


def test_copyright_comment_titles_and_tag_alias(trees):
    root = trees["tuxmath-data"]
    sounds = "usr/share/tuxmath/sounds/"
    game3 = _describe("tuxmath-data", root, sounds + "game3.mod", {"title": "soft brilliance"})
    assert (game3["artist"], game3["artist_source"]) == ("Tjoppbass", "readme")
    rush = _describe("tuxmath-data", root, sounds + "01_rush.ogg", {})  # title from the file name
    assert (rush["artist"], rush["artist_source"], rush["license"]) == ("Serberis", "readme", "CC-BY-SA-3.0")
    edge = _describe("tuxmath-data", root, sounds + "02_on_the_edge_of_the_universe.ogg", {})
    assert edge["artist"] == "Synthaurion"
    tuxi = _describe("tuxmath-data", root, sounds + "tuxi.ogg", {"artist": "Pajama Crisis", "title": "Free As In Tuxi"})
    assert (tuxi["artist"], tuxi["artist_source"], tuxi["license"]) == ("Emmett Plant", "tag", "Public Domain")


# --- debian/copyright -----------------------------------------------------------------------

def test_copyright_data_prefix_is_stripped_only_where_reviewed(trees):
    got = _describe("hex-a-hop-data", trees["hex-a-hop-data"], "usr/share/games/hex-a-hop/hex-a-hop/music-game.ogg", {})
    assert (got["artist"], got["artist_source"], got["license"]) == ("Remaxim", "copyright", "CC-BY-SA-3.0")
    # supertux's 'data/music/*' stanza is not stripped: it would credit Marek Moeckel with
    # the untagged files other people made
    got = _describe("supertux-data", trees["supertux-data"],
                    "usr/share/games/supertux2/music/forest/forest_theme.ogg", {})
    assert (got["artist"], got["artist_source"], got["license"]) == ("", "unknown", "GPL-3+")
    stanzas = attribution.parse_dep5(HEXAHOP_COPYRIGHT)
    assert attribution.copyright_stanza(stanzas, relpath="x/hex-a-hop/music-game.ogg") is None


def test_music_role_holder_and_kenta_cho_left_unknown(trees):
    got = _describe("pushover-data", trees["pushover-data"], "usr/share/pushover/themes/aztec.ogg",
                    {"album": "pushover !"})
    assert (got["artist"], got["artist_source"], got["album"]) == ("Roberto Lorenz", "copyright", "Pushover")
    got = _describe("seahorse-adventures", trees["seahorse-adventures"],
                    "usr/share/games/seahorse-adventures/data/music/title.ogg", {})
    assert (got["artist"], got["artist_source"]) == ("Tim", "copyright")
    # Kenta Cho is the sole holder of the whole package; nothing credits him with the music
    got = _describe("noiz2sa-data", trees["noiz2sa-data"], "usr/share/games/noiz2sa/sounds/stg1.ogg", {})
    assert (got["artist"], got["artist_source"], got["album"]) == ("", "unknown", "Noiz2sa")
    assert got["license"] == "BSD-2-clause (debian/copyright)"  # not the GPL its free text also names
    two = attribution.parse_dep5(PUSHOVER_COPYRIGHT.replace("(Theme graphics)", "(music)"))
    assert attribution.music_role_holder(two) == ""  # two music holders: none is chosen


# --- module texts, tags and aliases -------------------------------------------------------------

def test_module_text_false_names():
    text = attribution.from_module_text
    # freedroid: a C64 conversion credits the original composer, not the converter or a BBS
    assert text("sanxion", message="#dreamfish / dcs\n\noriginal by...\n       ...rob hubbard\n\nyou can "
                                   "reach me by\ncalling the best\nlegal board") == "Rob Hubbard"
    assert text("", message="        Star Paws\n        original by\n       Rob Hubbard\n\n    This version "
                            "was\n     made by Nashua\n") == "Rob Hubbard"
    # rafkill song1.xm: 'two sweeps by pink' credits samples; the signature 'reed' has no alias
    assert text("civilian", message="reed / fairlight 2002\n\nsamples from tempest &\nabaddon of dmg (keu!).\n"
                                     "two sweeps by pink.\n") == ""
    # freedroid android-commando_hiscore.mod: garbage after a '-' line is no name
    garbage = " F\u00b7\u00c8/@   m\u00ff\u00fc h \"  /@\n"
    assert text("Commando Hiscore", message=" - --------------- -\n\n\n" + garbage) == ""
    assert text("gluppobert", message='" Gluppobert " by Quazar in 1995') == "Quazar"
    assert text("finally", message="(c)jarkko rotsten 2k") == "Jarkko Rotsten"
    assert text("fdn", message="Arabian Nites by FDN Productions") == ""
    assert text("In my Life", message="  IN MY LIFE\n        composed by\n   Jeroen Tel (WAVE)\n") == "Jeroen Tel"
    assert text("an1", message=" ** 4-mat/anarchy **\nusing the \"m.t.s\"\n") == "4-mat"


def test_semicolon_joined_tags_and_album_tags_that_are_no_albums(tmp_path):
    cand = games.Candidate("nexuiz-music", "usr/share/games/nexuiz/data/sound/cdtracks/beast-of-insanity.ogg",
                           tmp_path / "beast-of-insanity.ogg", "nexuiz-music:x")
    got = games.describe(cand, tags={"artist": 'Braden Walters;Braden "meoblast001" Walters',
                                     "album": "Unreleased - Downloaded at www.loopnet.de"},
                         copyright_text="", stanzas=[])
    assert (got["artist"], got["artist_source"], got["album"]) == ("Braden Walters", "tag", "Nexuiz")
    assert attribution.from_tags({"artist": ["www.elysis.de;Gerd Raudenbusch"]}) == "Gerd Raudenbusch"
    cand = games.Candidate("miceamaze", "usr/share/games/miceamaze/music/DST-DistantMessage.ogg",
                           tmp_path / "DST-DistantMessage.ogg", "miceamaze:x")
    got = games.describe(cand, tags={"composer": "DST", "artist": "Deceased Superior Technician", "album": "ccMixter"},
                         copyright_text="", stanzas=[])
    assert (got["artist"], got["album"]) == ("Deceased Superior Technician", "MiceAmaze")


def test_reviewed_aliases():
    for spelling, name in (("Wansti", "Marek Moeckel"), ("elysis", "Gerd Raudenbusch"),
                           ("Gerd (elysis) Raudenbusch", "Gerd Raudenbusch"), ("\u00c0lex Almarza", "Alex Almarza"),
                           ("theGREENzebra", "Brendan Becker"), ("Pajama Crisis", "Emmett Plant"),
                           ("NeonCorridor", "Shawn Parrotte")):
        assert attribution.normalize_artist(spelling) == name, spelling
    # REVIEW entries of the survey stay out: nickname links resting on one file
    for spelling in ("Tiyuri", "Muldjord", "martin galaway", "paniq"):
        assert attribution.normalize_artist(spelling) not in ("John Dum", "El Senator", "Martin Galway",
                                                              "Leonard Ritter")


def test_attribution_order_puts_readme_after_metadata():
    credits = attribution.parse_credits('"Song", by Readme Person\n')
    kw = dict(package="x", relpath="a/music/song.ogg", credits=credits, title="Song")
    assert attribution.attribute(metadata_artist="Meta Person", **kw) == Attribution("Meta Person", "metadata")
    got = attribution.attribute(module_message="composed by Mod Person", **kw)
    assert got == Attribution("Readme Person", "readme")
    assert attribution.attribute(tags={"artist": ["Tag Person"]}, **kw).source == "tag"
    assert attribution.SOURCES.index("readme") == attribution.SOURCES.index("metadata") + 1


# --- music files ---------------------------------------------------------------------------------

def test_music_outside_music_folders_and_files_left_out(trees):
    def found(package):
        return sorted(c.relpath.rsplit("/", 1)[-1] for c in games.scan_package(package, root=trees[package]))

    assert found("pushover-data") == ["aztec.ogg"]
    assert found("powermanga-data") == ["music_menu.ogg"]  # sound_explosion.ogg: not music
    assert found("hex-a-hop-data") == ["music-game.ogg"]
    assert found("nexuiz-music") == ["beast-of-insanity.ogg"]  # thunder.ogg: an effect
    assert found("ardentryst") == ["theme1.ogg"]  # Sounds/AMB_*: ambience
    nexuiz = games.scan_package("nexuiz-music", root=trees["nexuiz-music"])[0]
    assert nexuiz.source == "nexuiz-music:usr/share/games/nexuiz/data/music.pk3!sound/cdtracks/beast-of-insanity.ogg"


def _stub_process(cand, *, audio_dir, copyright_text, stanzas, credits=None):
    return Track(track_id=cand.source, path=cand.relpath, artist="", album="a", title="t", duration=60.0,
                 extra={"source": cand.source, "package": cand.package, "artist_source": "unknown"}), ""


def test_duplicates_across_packages_count_once(tmp_path, monkeypatch):
    monkeypatch.setattr(games, "process", _stub_process)  # no probing or decoding: the rules only
    monkeypatch.setattr(games.tools, "ffmpeg", lambda: "ffmpeg")
    monkeypatch.setattr(games.tools, "ffprobe", lambda: "ffprobe")
    sing = tmp_path / "singularity-music"
    _touch(sing, "usr/share/games/singularity/music/Through Space.ogg", b"234 s cut")
    star = tmp_path / "starfighter-data"
    _touch(star, "usr/share/starfighter/music/through_space.ogg", b"200 s cut")
    _touch(star, "usr/share/starfighter/music/frozen_jam.ogg", b"frozen jam")
    iron = tmp_path / "ironseed-data"
    _touch(iron, "usr/share/games/ironseed/sound/CARGO.MOD", b"same module bytes")
    _touch(iron, "usr/share/games/ironseed/sound/GAME.MOD", b"same module bytes")
    tracks, skipped = games.build_from_trees({"singularity-music": sing, "starfighter-data": star,
                                              "ironseed-data": iron}, out_dir=tmp_path / "out")
    names = sorted(t.path.rsplit("/", 1)[-1] for t in tracks)
    assert names == ["CARGO.MOD", "Through Space.ogg", "frozen_jam.ogg"]
    reasons = {s["source"].rsplit("/", 1)[-1]: s["reason"] for s in skipped}
    assert reasons["GAME.MOD"] == "duplicate of ironseed-data:usr/share/games/ironseed/sound/CARGO.MOD"
    assert reasons["through_space.ogg"].startswith("same music as singularity-music:")
    # without the package that holds the original, the re-cut is the only copy: kept
    alone, _ = games.build_from_trees({"starfighter-data": star}, out_dir=tmp_path / "alone")
    assert sorted(t.path.rsplit("/", 1)[-1] for t in alone) == ["frozen_jam.ogg", "through_space.ogg"]


# --- registry, listing and summary -------------------------------------------------------------

def test_games_keeps_its_packages_and_games_full_adds_the_survey():
    assert CORPORA["games"].options["packages"] == games.FULL_PACKAGES and len(games.FULL_PACKAGES) == 15
    assert CORPORA["games-mini"].options["packages"] == games.MINI_PACKAGES and len(games.MINI_PACKAGES) == 8
    full = CORPORA["games-full"].options["packages"]
    assert full[:15] == games.FULL_PACKAGES and len(full) == len(set(full)) == 64
    assert "tuxtype-data" not in full  # byte-identical music to tuxmath-data's
    assert all(p in games.PACKAGE_ALBUM for p in full if p not in ("amoebax-data", "adonthell-data", "zaz-data",
                                                                    "marsshooter-data"))  # these four: album tags


def test_corpus_list_shows_the_figures(capsys):
    from musicrep.cli import main

    assert main(["corpus", "list"]) == 0
    out = capsys.readouterr().out
    assert all(word in out.splitlines()[0] for word in ("tracks", "hours", "composers", "albums", "download"))
    games_row = next(line for line in out.splitlines() if line.startswith("games "))
    assert games_row.split()[1:6] == ["265", "17.8", "34", "21", "640"]
    full_row = next(line for line in out.splitlines() if line.startswith("games-full "))
    assert full_row.split()[1:6] == ["618", "32.9", "103", "77", "1,559"]
    essen_row = next(line for line in out.splitlines() if line.startswith("essen "))
    assert essen_row.split()[1:6] == ["1,596", "10.3", "11", "24", "\u2013"]  # rendered: nothing downloaded
    assert "games-full: the main job's build of 2026-11-26" in out
    rows = list_corpora(figures=True)
    assert rows["classical"]["tracks"] is None and rows["classical"]["measured"] == "not measured"
    assert set(list_corpora()) == set(rows)


def test_summary_has_a_per_package_table(tmp_path):
    def track(i, package, artist, source):
        return Track(f"t{i}", f"audio/{i}.flac", artist=artist, album="A", title="T", duration=1800.0,
                     extra={"license": "", "source": f"{package}:{i}", "package": package, "artist_source": source})

    tracks = [track(0, "p1", "Ann", "tag"), track(1, "p1", "Bob", "readme"), track(2, "p1", "", "unknown"),
              track(3, "p2", "Ann", "module")]
    write_corpus(tracks, out_dir=tmp_path, name="fixture", skipped=[], info={})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["package_table"] == {
        "p1": {"tracks": 3, "hours": 1.5, "composers": 2, "artist_sources": {"tag": 1, "readme": 1, "unknown": 1}},
        "p2": {"tracks": 1, "hours": 0.5, "composers": 1, "artist_sources": {"module": 1}},
    }
    assert "| p1 | 3 | 1.50 | 2 | tag 1, readme 1, unknown 1 |" in (tmp_path / "summary.md").read_text()
