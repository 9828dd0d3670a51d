"""Who composed a soundtrack file, from the most trusted evidence down.

Order (first hit wins), as measured when the sources were surveyed:

1. ``tag``       the file's own artist/composer tag (Vorbis comment, ID3, ...)
2. ``metadata``  a game's own metadata file (warzone2100's ``album.json``)
3. ``module``    the composer named in a tracker module's title or message text
4. ``filename``  a reviewed composer prefix of the file name (ufoai)
5. ``copyright`` the package's ``debian/copyright``: a stanza naming this very file
   with one holder, else the reviewed package default of :data:`PACKAGE_COMPOSER`
6. ``unknown``   artist left empty: the track serves the album and track concepts only

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

#: Names found in module texts that credit a tool or converter, not the music.
NOT_COMPOSERS: frozenset[str] = frozenset({"gryzor", "pro-wizard", "modplug tracker", "fasttracker"})

SOURCES: tuple[str, ...] = ("tag", "metadata", "module", "filename", "copyright", "unknown")

_NOT_A_NAME = re.compile(
    r"^(unknown|various|various artists|n/?a|none|untitled|\(\?\)|\?+|anonymous|"
    r"the .* (team|project)|.*\b(team|project|soft s\.l\.|interactive|gmbh|inc\.?|ltd\.?)$)$",
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
    text = re.sub(r"\(c\)|©|copyright|\b(19|20)\d\d\b", " ", text, flags=re.I)
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
    """Composer from easy tags (``composer`` first, then ``artist``)."""
    for key in ("composer", "artist", "albumartist"):
        for value in (tags or {}).get(key, []) or []:
            name = normalize_artist(value)
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


# --- 3. tracker module texts ---------------------------------------------------------

_MODULE_PATTERNS: tuple[re.Pattern, ...] = (
    re.compile(r"(?:written|tracked|composed|made|music|musik)(?: and tracked)?\s+(?:by|from)\s*[:\n]?\s*([^\n]+)", re.I),
    re.compile(r"\bby\s+([^\n]+)", re.I),
    re.compile(r"(?:\(c\)|©|copyright)\s*(?:(?:19|20)\d\d[\s,]*)?\n?\s*([A-Za-z][^\n]+)", re.I),
    re.compile(r"^[^\n]+ -\n\s*([A-Z][^\n]+)", re.M),  # "Mission failed -\nThomas A. Drexl"
)


def from_module_text(title: str, *, message: str) -> str:
    """Composer named in a tracker module's title or message ("" if none)."""
    for pattern in _MODULE_PATTERNS:
        for text in (title or "", message or ""):
            for match in pattern.finditer(text):
                raw = re.split(r"\s+(?:of|for|from)\s+|/|\^|\s{2,}|\t", match.group(1).strip())[0]
                name = normalize_artist(raw)
                if name:
                    return name
    # a bare signature on the first line ("Alexel / RealTech", "alexel.rt"): aliases only
    first = next((ln.strip() for ln in (message or "").splitlines() if ln.strip()), "")
    key = fold(re.split(r"[/.^]", first)[0]) if first else ""
    return ALIASES.get(key, "")


# --- 4. file-name prefixes -------------------------------------------------------------

def from_filename(package: str, *, filename: str) -> str:
    for prefix, name in FILENAME_PREFIXES.get(package, ()):
        if Path(filename).name.startswith(prefix):
            return name
    return ""


# --- 5. debian/copyright -------------------------------------------------------------

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


def copyright_stanza(stanzas, *, relpath: str) -> tuple[list[str], str] | None:
    """The most specific stanza whose glob names ``relpath`` (matched on its tail)."""
    best, best_len = None, -1
    for globs, holders, lic in stanzas:
        for glob in globs:
            tail = "/".join(relpath.split("/")[-len(glob.split("/")):])
            if glob != "*" and fnmatch.fnmatchcase(tail, glob) and len(glob) > best_len:
                best, best_len = (holders, lic), len(glob)
    return best


def package_license(stanzas) -> str:
    for globs, _holders, lic in stanzas:
        if "*" in globs:
            return lic
    return stanzas[0][2] if stanzas else ""


def from_copyright(package: str, *, stanzas, relpath: str) -> str:
    """One holder of a stanza naming this file, else the reviewed package default."""
    hit = copyright_stanza(stanzas, relpath=relpath)
    if hit and len(hit[0]) == 1:
        name = normalize_artist(re.sub(r"^[\d\s,\-]+", "", hit[0][0]))
        if name:
            return name
    return normalize_artist(PACKAGE_COMPOSER.get(package, ""))


def attribute(
    *,
    package: str,
    relpath: str,
    tags: dict | None = None,
    metadata_artist: str = "",
    module_title: str = "",
    module_message: str = "",
    stanzas=(),
) -> Attribution:
    """Apply the attribution order above to one file."""
    for source, name in (
        ("tag", lambda: from_tags(tags)),
        ("metadata", lambda: normalize_artist(metadata_artist)),
        ("module", lambda: from_module_text(module_title, message=module_message)),
        ("filename", lambda: from_filename(package, filename=relpath)),
        ("copyright", lambda: from_copyright(package, stanzas=stanzas, relpath=relpath)),
    ):
        value = name()
        if value:
            return Attribution(value, source)
    return Attribution("", "unknown")
