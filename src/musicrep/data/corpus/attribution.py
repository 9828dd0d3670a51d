"""Who composed a soundtrack file, from the most trusted evidence down.

Order (first hit wins), as measured when the sources were surveyed:

1. ``tag``       the file's own artist/composer tag (Vorbis comment, ID3, ...); values
   that ffprobe joined with ``;`` (a repeated field) count by their first name
2. ``metadata``  a game's own metadata file (warzone2100's ``album.json``,
   hedgewars' ``Data/Music/credits.txt``)
3. ``readme``    a credits/README/AUTHORS file of the package (reviewed in
   :data:`CREDIT_FILES`) naming this file, its title, or the music as a whole
4. ``module``    the composer named in a tracker module's title or message text
5. ``filename``  a reviewed composer prefix of the file name (ufoai)
6. ``copyright`` the package's ``debian/copyright``: a stanza naming this very file
   with one holder, else the reviewed package default of :data:`PACKAGE_COMPOSER`,
   else the one holder of the package whose role is music ("NAME (Music ...)",
   "NAME - music, levels")
7. ``unknown``   artist left empty: the track serves the album and track concepts only

Every name then goes through :func:`normalize_artist` and the reviewed
:data:`ALIASES` table, so one person has one name across games.
"""

from __future__ import annotations

import fnmatch
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

#: Reviewed spellings -> canonical name. Keys are compared case- and accent-folded.
#: Each entry was checked against the package's copyright file or the module text.
ALIASES: dict[str, str] = {
    "zhaytee": "Joseph Toscano",  # wesnoth tags "Joseph G. Toscano (Zhaytee)"; pingus modules
    "joseph toscano": "Joseph Toscano",
    "joseph g. toscano": "Joseph Toscano",
    "joseph g. toscano (zhaytee)": "Joseph Toscano",
    "scarjt": "Joseph Toscano",
    "mordred": "Jordan Tuzsuzov",  # biniax: "MANIA by Mordred", (C) Jordan Tuzsuzov, mordred.dir.bg
    "|mordred|": "Jordan Tuzsuzov",
    "jordan tuzsuzo": "Jordan Tuzsuzov",  # a module title cut at 25 characters
    "thomas a. drexl": "Thomas Drexl",  # gl-117 module texts vs debian/copyright
    "thomas a drexl": "Thomas Drexl",
    "alexel": "Alexandre Liverneaux",  # heroes: "Alexel / alex.livernaux@", copyright lists him
    "tnk": "ToalNkor",  # heroes: "by TNK / Rlt^Dz^Caf." and "ToalNkor of Realtech^Dzone^Caffein"
    "crystan": "Christian Hoffmann",  # ufoai tags: Christian "Crystan" Hoffmann
    'christian "crystan" hoffmann': "Christian Hoffmann",
    "reg & zbb": "Reg & Zbb",
    "reg": "Reg & Zbb",  # tecnoballz: "music from reg", "MUSIC BY REG & ZBB"
    "h. matthew smith": "H. Matthew Smith",
    "manuel marino": "Manuel Marino",
    'manuel "vanethian" marino': "Manuel Marino",
    "manuel 'vanethian' marino": "Manuel Marino",
    "vanethian": "Manuel Marino",
    # --- games-full survey (docs/games-full-survey.md, "Proposed alias-table additions") ---
    "alex almarza": "Alex Almarza",  # amoebax-data tags: 7 files 'Alex Almarza', menu.ogg 'Àlex Almarza'
    "dst": "Deceased Superior Technician",  # miceamaze DST-DistantMessage.ogg: composer 'DST', artist tag and
    # debian/copyright stanza data/music/DST-*.ogg: Deceased Superior Technician
    "neoncorridor": "Shawn Parrotte",  # hyperrogue-music hr3-*.ogg tags; debian/copyright music/hr3-*.ogg
    "thegreenzebra": "Brendan Becker",  # angrydd music/intro.ogg tag; debian/copyright Files: music/intro.ogg
    "wansti": "Marek Moeckel",  # supertux-data debian/copyright 'data/music/* Marek Moeckel <wansti@gmx.de>'
    "elysis": "Gerd Raudenbusch",  # nexuiz-music neuronal-diving.ogg: artist 'elysis', album '(c) by Gerd Raudenbusch'
    "gerd (elysis) raudenbusch": "Gerd Raudenbusch",  # nexuiz-music tags (brainsukker, breakdown-easy, ...)
    "braden walters": "Braden Walters",  # nexuiz-music beast-of-insanity.ogg: two ARTIST values
    'braden "meoblast001" walters': "Braden Walters",
    "pajama crisis": "Emmett Plant",  # tuxmath-data tuxi.ogg tag; its debian/copyright: 'Emmett Plant
    # (emmett@sonivius.com) is the author of tuxi.ogg'
    "christian picon": "Kristian Picon",  # extremetuxracer music/readme vs tag and credits.lst 'Kristian Picon'
    "m3": "Marco Göbel",  # trackballs music/README 'tb_hrluebke.ogg, by M3 (Marco Göbel <goebel29@web.de>)'
    "nutcase": "Sami I Saarnio",  # madbomber AUTHORS.txt '"waterfall" by Sami I Saarnio ("Nutcase")'
    "benoit charcosset": "Benoît Charcosset",  # ri-li jeu1.xm/jeu2.xm first line; debian/copyright 'Charcosset B.'
    "sectoid": "Carlos Viola Iborra",  # fretsonfire-songs-sectoid song.ini vs debian/copyright upstream author
    "martin strohmeier (k-pone)": "Martin Strohmeier",  # openclonk Music.ocg tags and authors.txt 'K-Pone ...'
    "k-pone": "Martin Strohmeier",
    "jeroen tel (wave)": "Jeroen Tel",  # rafkill song5.xm 'composed by Jeroen Tel (WAVE)'
    "cullam bruce-lockhart": "Cullam Bruce-Lockhart",  # freeciv stdmusic file name and tag
    "4-mat": "4-mat",  # freedroid AnarchyMenu1.mod signature '** 4-mat/anarchy **';
    # The_Last_V8.mod '#by 4-mat of anarchy'
}

#: Reviewed composer prefixes of file names, per package (ufoai's music archive).
#: Names are those the package's debian/copyright gives for the files.
FILENAME_PREFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "ufoai-music": (
        ("Crystan-", "Christian Hoffmann"),
        ("David0", "David Reeves"),
        ("van_", "Manuel Marino"),
        ("karlmacklin_", "Karl Macklin"),
        ("Marine", "Marine Baklund"),
        ("Psymong", "Simon Green"),
        ("azrael1", "azrael1322"),
        ("TheThings-Slippycurb", "Slippycurb"),
    ),
}

#: Reviewed package defaults (debian/copyright or README of a music-only package).
#: Coarse: it names the composer of the package's music as a whole.
PACKAGE_COMPOSER: dict[str, str] = {
    "asc-music": "Michael Kievernagel",  # copyright: Files: * 2002 Michael Kievernagel
    "fb-music-high": "Matthias Le Bidan",  # copyright: Upstream Author
    "gl-117-data": "Thomas Drexl",
    "biniax2-data": "Jordan Tuzsuzov",
    "singularity-music": "Maxstack",
}

#: Reviewed package licences where ``debian/copyright`` is free text the licence fallback
#: misreads. Kenta Cho's games: "Redistribution and use in source and binary forms, with
#: or without modification, are permitted ..." (BSD-2-clause; the text also names the GPL
#: of Debian's packaging, which the fallback took for the music's licence).
PACKAGE_LICENSE: dict[str, str] = {
    pkg: "BSD-2-clause (debian/copyright)" for pkg in (
        "a7xpg-data", "gunroar-data", "mu-cade-data", "noiz2sa-data", "parsec47-data", "rrootage-data",
        "titanion-data", "torus-trooper-data", "tumiki-fighters-data")
}

#: Per package: a leading folder that ``debian/copyright`` globs carry but the installed
#: paths lack (the source tree's ``data/``). Reviewed one package at a time: stripping it
#: everywhere would let supertux-data's ``data/music/*`` stanza (Marek Moeckel) claim the
#: files other people made.
COPYRIGHT_PATH_PREFIX: dict[str, str] = {
    "hex-a-hop-data": "data/",  # 'Files: data/music-ending.ogg* data/music-game-1.ogg* ...  Copyright: remaxim'
    "zaz-data": "data/",  # 'Files: data/mus*.ogg  Copyright: Leonard Ritter'
    "tuxmath-data": "data/",  # 'Files: data/sounds/01_rush.ogg ...' (licence CC-BY-SA-3.0)
}

#: Reviewed credit files, per package: (path inside the package, source label). Each is
#: read at build time by :func:`parse_credits`; the comment quotes the lines it holds.
CREDIT_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    # 'tb_design.ogg aka. "Life by Design", by Dietrich Radel', 'c64Revival.ogg, "C64 Revival", by Paul Leach.'
    "trackballs-data": (("usr/share/games/trackballs/music/README", "readme"),),
    # '"Bizarre Jungle" by Tricoder of Project-X, 1997.', '"Arabian Nites" by Ander of FounDatioN Productions'
    "madbomber-data": (("usr/share/doc/madbomber-data/AUTHORS.txt", "readme"),),
    # 'Music: "Klovnin Arki," "Hi Score," "Best-In" and "Finally" by Jarkko Rotsten <roz@sci.fi>'
    "circuslinux-data": (("usr/share/doc/circuslinux-data/AUTHORS", "readme"),),
    # '0,MUSICS BY,  1,MICHEL,      1,DOGNIAUX'
    "powermanga-data": (("usr/share/games/powermanga/texts/about_en.txt", "readme"),),
    # Comment: '"Soft Brilliance", by Tjoppbass, 1994.', '"Rush", by Serberis.', '"Gravity", by Serberis.'
    "tuxmath-data": (("usr/share/doc/tuxmath-data/copyright", "readme"),),
    # 'City.ogg=HSR <http://elhombresinremedio.com>', 'sdmusic.ogg=Kevin MacLeod - "Hitman" [sheepluva edit]'
    "hedgewars-data": (("usr/share/games/hedgewars/Data/Music/credits.txt", "metadata"),),
}

#: Names found in module texts that credit a tool, a converter or samples, not the music.
NOT_COMPOSERS: frozenset[str] = frozenset({
    "gryzor", "pro-wizard", "modplug tracker", "fasttracker",
    "pink",  # rafkill song1.xm 'samples from tempest & abaddon of dmg (keu!). two sweeps by pink.'
})

SOURCES: tuple[str, ...] = ("tag", "metadata", "readme", "module", "filename", "copyright", "unknown")

_NOT_A_NAME = re.compile(
    r"^(unknown|various|various artists|n/?a|none|untitled|\(\?\)|\?+|anonymous|"
    r"the .* (team|project)|.*\b(team|project|productions?|soft s\.l\.|interactive|gmbh|inc\.?|ltd\.?)$)$",
    re.I,
)


def fold(text: str) -> str:
    """Accent- and case-folded, space-normalised form of ``text`` (for comparisons)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"\s+", " ", text).strip().lower()


def normalize_artist(name: str | None) -> str:
    """Canonical form of a composer name ("" when it is not a person's name).

    Strips e-mail addresses, URLs, years and brackets; maps reviewed aliases; keeps
    the original capitalisation otherwise, title-casing all-lower/all-upper names.
    """
    if not name:
        return ""
    text = re.sub(r"\S+@\S+|https?://\S+|www\.\S+", " ", str(name))
    text = re.sub(r"\(c\)|©|copyright|\b(19|20)\d\d\b|(?<!\w)'\d\d\b|\b2k\d?\b", " ", text, flags=re.I)
    text = re.sub(r"[<>*_#~\[\]{}]+|\(\s*\)", " ", text)
    text = re.sub(r"\s+", " ", text).strip(" -,.;:'\"/!")
    text = re.sub(r"\s+\d+$", "", text)  # "Reg & Zbb 01": a line counter, not part of the name
    if not text:
        return ""
    folded = fold(text)
    if folded in ALIASES:
        return ALIASES[folded]
    if (_NOT_A_NAME.match(folded) or folded in NOT_COMPOSERS or len(folded) < 2 or len(folded) > 40
            or not re.search(r"[a-z]{2}", folded)):
        return ""
    if text.islower() or text.isupper():
        text = " ".join(w.capitalize() for w in text.split())
    return text


@dataclass(frozen=True)
class Attribution:
    """A composer name (may be empty) and the evidence it came from (:data:`SOURCES`)."""

    artist: str
    source: str


# --- 1. tags -----------------------------------------------------------------------

def from_tags(tags: dict[str, list[str]] | None) -> str:
    """Composer from easy tags (``composer`` first, then ``artist``).

    ffprobe joins the values of a repeated field with ``;`` ("Braden Walters;Braden
    \"meoblast001\" Walters"): each part is tried in turn.
    """
    for key in ("composer", "artist", "albumartist"):
        for value in (tags or {}).get(key, []) or []:
            for part in str(value).split(";"):
                name = normalize_artist(part)
                if name and key != "albumartist":
                    return name
    return ""


# --- 2. game metadata files ----------------------------------------------------------

def read_album_json(path: Path) -> dict[str, tuple[str, str, str]]:
    """warzone2100-style ``album.json``: file name -> (author, album title, track title)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    album = str(data.get("title") or "")
    default = str(data.get("author") or "")
    return {
        str(t["filename"]): (str(t.get("author") or default), album, str(t.get("title") or ""))
        for t in data.get("tracks", [])
        if t.get("filename")
    }


# --- 3. credit files (README, AUTHORS, credits) ----------------------------------------

_AUDIO_NAME = r"[^\s=,/\"]+\.(?:ogg|opus|mp3|flac|wav|xm|it|s3m|mod)"
_CREDIT_FILE_EQ = re.compile(rf"^\s*({_AUDIO_NAME})\s*=\s*(.+)$", re.M | re.I)  # hedgewars: FILE=NAME
_CREDIT_FILE_BY = re.compile(rf"^\s*({_AUDIO_NAME})\b[^\n]*?\bby\s+([^\n]+)", re.M | re.I)  # FILE ..., by NAME
_CREDIT_TITLE_BY = re.compile(r'"([^"\n]+)"\s*,?\s+by\s+([^\n]+)', re.I)  # "TITLE", by NAME
_CREDIT_MUSIC_LINE = re.compile(r'^\s*Musics?\s*:\s*((?:"[^"]*"[\s,]*(?:and\s+)?)+)by\s+([^\n]+)', re.M | re.I)
_CREDIT_MUSICS_BY = re.compile(r"^\s*0,\s*MUSICS? BY\s*,((?:\s*1,[^,\n]+,?)+)", re.M | re.I)  # powermanga
_NAME_END = re.compile(r"\s+(?:of|for|from|in)\s+|\s+-\s+|[(<\[,]")


@dataclass(frozen=True)
class Credits:
    """Composer credits read from a package's own credit files (raw names)."""

    by_file: dict  # folded file name -> (name, source)
    by_title: dict  # squashed title -> (name, source)
    package: tuple[str, str] = ("", "")  # (name, source) of a credit for all the package's music


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", fold(text))


def _credit_name(raw: str) -> str:
    return _NAME_END.split(raw.strip(), maxsplit=1)[0].strip()


def parse_credits(text: str, *, source: str = "readme") -> Credits:
    """Credits in one credit file's ``text``.

    Line forms read: ``FILE=NAME`` and ``FILE ..., by NAME`` (file names, matched
    case-insensitively), ``"TITLE", by NAME`` (titles), and a credit for the music as
    a whole (``Music: "A," "B" and "C" by NAME``; powermanga's ``0,MUSICS BY, 1,FIRST,
    1,LAST``). A name ends at `` of ``, `` in ``, `` - ``, ``(``, ``<``, ``[`` or ``,``.
    """
    by_file: dict[str, tuple[str, str]] = {}
    by_title: dict[str, tuple[str, str]] = {}
    for match in _CREDIT_FILE_EQ.finditer(text):
        by_file.setdefault(fold(match.group(1)), (_credit_name(match.group(2)), source))
    unquoted = re.sub(r'"[^"\n]*"', '""', text)  # 'tb_design.ogg aka. "Life by Design", by ...'
    for match in _CREDIT_FILE_BY.finditer(unquoted):
        by_file.setdefault(fold(match.group(1)), (_credit_name(match.group(2)), source))
    for match in _CREDIT_TITLE_BY.finditer(text):
        by_title.setdefault(_squash(match.group(1)), (_credit_name(match.group(2)), source))
    package = ("", "")
    hit = _CREDIT_MUSIC_LINE.search(text)
    if hit:
        package = (_credit_name(hit.group(2)), source)
    hit = _CREDIT_MUSICS_BY.search(text)
    if hit:
        package = (" ".join(n.strip() for n in re.findall(r"1,\s*([^,\n]+)", hit.group(1))), source)
    return Credits(by_file, by_title, package)


def read_credits(package: str, *, root: Path) -> Credits:
    """The credits of the package's reviewed :data:`CREDIT_FILES` found under ``root``."""
    by_file: dict[str, tuple[str, str]] = {}
    by_title: dict[str, tuple[str, str]] = {}
    whole = ("", "")
    for relpath, source in CREDIT_FILES.get(package, ()):
        path = Path(root) / relpath
        if not path.is_file():
            continue
        found = parse_credits(path.read_text(encoding="utf-8", errors="replace"), source=source)
        for key, value in found.by_file.items():
            by_file.setdefault(key, value)
        for key, value in found.by_title.items():
            by_title.setdefault(key, value)
        whole = whole if whole[0] else found.package
    return Credits(by_file, by_title, whole)


def from_credits(credits: Credits | None, *, relpath: str, title: str = "") -> Attribution:
    """Composer credited to this file: by file name, by title (the tag title, else the
    file name without a leading track number), else for the package's music as a whole."""
    if credits is None:
        return Attribution("", "unknown")
    stem = re.sub(r"^\d+[\s_.\-]*", "", Path(relpath).stem)
    hits = [credits.by_file.get(fold(Path(relpath).name))]
    hits += [credits.by_title.get(_squash(t)) for t in (title, stem) if _squash(t)]
    hits.append(credits.package)
    for hit in hits:
        if hit and hit[0]:
            name = normalize_artist(hit[0])
            if name:
                return Attribution(name, hit[1])
    return Attribution("", "unknown")


# --- 4. tracker module texts ---------------------------------------------------------

_MODULE_PATTERNS: tuple[re.Pattern, ...] = (
    # a conversion credits the original first ("original by ...\n   ... rob hubbard")
    re.compile(r"\boriginal(?:ly)?\s+by[\s.:]*([^\n]+)", re.I),
    re.compile(r"(?:written|tracked|composed|made|music|musik)(?: and tracked)?\s+(?:by|from)\s*[:\n]?\s*([^\n]+)", re.I),
    re.compile(r"\bby\s+([^\n]+)", re.I),
    re.compile(r"(?:\(c\)|©|copyright)\s*(?:(?:19|20)\d\d[\s,]*)?\n?\s*([A-Za-z][^\n]+)", re.I),
    re.compile(r"^[^\n]+ -\n[ \t]*([A-Z][^\n]+)", re.M),  # "Mission failed -\nThomas A. Drexl"
)


def from_module_text(title: str, *, message: str) -> str:
    """Composer named in a tracker module's title or message ("" if none)."""
    for pattern in _MODULE_PATTERNS:
        for text in (title or "", message or ""):
            for match in pattern.finditer(text):
                raw = re.split(r"\s+(?:of|for|from|in)\s+|/|\^|\s{2,}|\t", match.group(1).strip())[0]
                name = normalize_artist(raw)
                if name:
                    return name
    # a bare signature on the first line ("Alexel / RealTech", "alexel.rt"): aliases only
    first = next((ln.strip(" \t*#") for ln in (message or "").splitlines() if ln.strip(" \t*#")), "")
    key = fold(re.split(r"[/.^]", first)[0]) if first else ""
    return ALIASES.get(key, "")


# --- 5. file-name prefixes -------------------------------------------------------------

def from_filename(package: str, *, filename: str) -> str:
    for prefix, name in FILENAME_PREFIXES.get(package, ()):
        if Path(filename).name.startswith(prefix):
            return name
    return ""


# --- 6. debian/copyright -------------------------------------------------------------

def parse_dep5(text: str) -> list[tuple[list[str], list[str], str]]:
    """Stanzas of a machine-readable ``debian/copyright``: (file globs, holders, licence)."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key].append(line.strip())
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = [value.strip()] if value.strip() else []
        if "files" in fields:
            globs = " ".join(fields["files"]).split()
            holders = [h for h in fields.get("copyright", []) if h and h != "."]
            lic = (fields.get("license") or [""])[0]
            stanzas.append((globs, holders, lic))
    return stanzas


def copyright_stanza(stanzas, *, relpath: str, strip_prefix: str = "") -> tuple[list[str], str] | None:
    """The most specific stanza whose glob names ``relpath`` (matched on its tail);
    ``strip_prefix`` is dropped from the front of the globs first (:data:`COPYRIGHT_PATH_PREFIX`)."""
    best, best_len = None, -1
    for globs, holders, lic in stanzas:
        for glob in globs:
            if strip_prefix and glob.startswith(strip_prefix):
                glob = glob[len(strip_prefix):]
            tail = "/".join(relpath.split("/")[-len(glob.split("/")):])
            if glob != "*" and fnmatch.fnmatchcase(tail, glob) and len(glob) > best_len:
                best, best_len = (holders, lic), len(glob)
    return best


def package_license(stanzas) -> str:
    for globs, _holders, lic in stanzas:
        if "*" in globs:
            return lic
    return stanzas[0][2] if stanzas else ""


_MUSIC_ROLE = re.compile(r"^[\d\s,\-]*(.+?)\s*(?:\(\s*music\b[^)]*\)|\s-\s*music\b.*)$", re.I)


def music_role_holder(stanzas) -> str:
    """The one holder of a ``Files: *`` stanza whose role is music ("2008-2018 Roberto
    Lorenz (Music compositon and arrangement)", "tim - music, levels"); "" if none or several."""
    names = {m.group(1) for globs, holders, _lic in stanzas if "*" in globs
             for m in map(_MUSIC_ROLE.match, holders) if m}
    return normalize_artist(names.pop()) if len(names) == 1 else ""


def from_copyright(package: str, *, stanzas, relpath: str) -> str:
    """One holder of a stanza naming this file, else the reviewed package default, else
    the package's one holder credited with music."""
    hit = copyright_stanza(stanzas, relpath=relpath, strip_prefix=COPYRIGHT_PATH_PREFIX.get(package, ""))
    if hit and len(hit[0]) == 1:
        name = normalize_artist(re.sub(r"^[\d\s,\-]+", "", hit[0][0]))
        if name:
            return name
    return normalize_artist(PACKAGE_COMPOSER.get(package, "")) or music_role_holder(stanzas)


def attribute(
    *,
    package: str,
    relpath: str,
    tags: dict | None = None,
    metadata_artist: str = "",
    module_title: str = "",
    module_message: str = "",
    stanzas=(),
    credits: Credits | None = None,
    title: str = "",
) -> Attribution:
    """Apply the attribution order above to one file (``title``: its title tag, matched
    against the titles in ``credits``; a module's title is used when it is empty)."""
    if normalize_artist(metadata_artist):
        metadata = Attribution(normalize_artist(metadata_artist), "metadata")
    else:
        metadata = from_credits(credits, relpath=relpath, title=title or module_title)
    for source, name in (
        ("tag", lambda: from_tags(tags)),
        (metadata.source, lambda: metadata.artist),
        ("module", lambda: from_module_text(module_title, message=module_message)),
        ("filename", lambda: from_filename(package, filename=relpath)),
        ("copyright", lambda: from_copyright(package, stanzas=stanzas, relpath=relpath)),
    ):
        value = name()
        if value:
            return Attribution(value, source)
    return Attribution("", "unknown")
