"""The metadata-training corpus: Debian game soundtracks, artist = composer.

``album`` is the soundtrack (the album tag or the game's own metadata when there is
one, else the game), ``title`` the track, ``artist`` the composer found by
:mod:`musicrep.data.corpus.attribution` (empty when unknown). Each file at least
:data:`MIN_SECONDS` long is decoded once by ffmpeg (libopenmpt for tracker modules)
to 22,050 Hz mono FLAC, which :mod:`soundfile` reads.

Tracker modules are rendered twice and kept only when both renders agree: libopenmpt
draws random volume/panning variation and random LFO waveforms from an unseeded
generator, so such a module would give other audio (and other tables) on every fresh
build. Impulse Tracker's per-instrument random volume and panning variation is set to
zero before rendering (:func:`derandomize_it`); in a mono render it only moved notes'
loudness at random.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import re
import struct
import tempfile
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from ... import progress
from ...errors import CorpusError
from ...io import atomic_path
from ..catalog import Track, slugify
from . import attribution, debian, tools

log = logging.getLogger(__name__)

MIN_SECONDS = 30.0
SAMPLE_RATE = 22050
AUDIO_EXT = (".ogg", ".opus", ".mp3", ".flac", ".wav")
MODULE_EXT = (".xm", ".it", ".s3m", ".mod")
ARCHIVE_EXT = (".pk3", ".zip")
MUSIC_DIRS = {"music", "musics", "audio", "soundtrack", "soundtracks", "snd"}

#: Game name used as the album when neither tags nor metadata name one.
PACKAGE_ALBUM: dict[str, str] = {
    "heroes-sound-tracks": "Heroes",
    "tecnoballz-data": "TecnoballZ",
    "biniax2-data": "Biniax-2",
    "pekka-kana-2-data": "Pekka Kana 2",
    "gl-117-data": "GL-117",
    "pingus-data": "Pingus",
    "bomberclone-data": "BomberClone",
    "fb-music-high": "Frozen-Bubble",
    "warzone2100-music": "Warzone 2100",
    "planetblupi-music-ogg": "Planet Blupi",
    "ufoai-music": "UFO: Alien Invasion",
    "wesnoth-1.16-music": "The Battle for Wesnoth OST",
    "asc-music": "Advanced Strategic Command",
    "singularity-music": "Endgame: Singularity Original Soundtrack",
    "drascula-music": "Drascula: The Vampire Strikes Back",
    # games-full: the game names of docs/games-full-survey.md ("album(s)" column, untagged files)
    "ironseed-data": "Ironseed",
    "pachi-data": "Pachi el marciano",
    "circuslinux-data": "Circus Linux!",
    "open-invaders-data": "Open Invaders",
    "madbomber-data": "Mad Bomber",
    "njam-data": "Njam",
    "freedroid-data": "Freedroid",
    "rafkill-data": "Rafkill",
    "seahorse-adventures": "Barbie Seahorse Adventures",
    "monsterz-data": "Monsterz",
    "solarwolf": "SolarWolf",
    "csmash-demosong": "CannonSmash",
    "criticalmass-data": "Critical Mass",
    "wordwarvi-sound": "Word War vi",
    "tuxmath-data": "Tux, of Math Command",
    "noiz2sa-data": "Noiz2sa",
    "davegnukem-data": "Dave Gnukem",
    "epiphany-data": "Epiphany",
    "colobot-common-sounds": "Colobot",
    "parsec47-data": "PARSEC47",
    "angrydd": "Angry, Drunken Dwarves",
    "hex-a-hop-data": "Hex-a-Hop",
    "trackballs-data": "Trackballs",
    "a7xpg-data": "A7Xpg",
    "tumiki-fighters-data": "TUMIKI Fighters",
    "nexuiz-music": "Nexuiz",
    "pushover-data": "Pushover",
    "marsshooter-data": "Mars, Land of No Mercy",
    "hannah-data": "Hannah",
    "mu-cade-data": "Mu-cade",
    "titanion-data": "Titanion",
    "abe-data": "Abe's Amazing Adventure",
    "miceamaze": "MiceAmaze",
    "rrootage-data": "rRootage",
    "orbital-eunuchs-sniper-data": "Orbital Eunuchs Sniper",
    "funnyboat": "Trip on the Funny Boat",
    "tomatoes-data": "I Have No Tomatoes",
    "gunroar-data": "Gunroar",
    "torus-trooper-data": "Torus Trooper",
    "powermanga-data": "Powermanga",
    "ardentryst": "Ardentryst",
    "hedgewars-data": "Hedgewars",
    "enigma-data": "Enigma",
    "starfighter-data": "Starfighter",
    "lordsawar-data": "FreeLords OST",
    "supertux-data": "SuperTux Soundtrack",
}

#: Packages whose album tags name no album (nexuiz-music: URLs, "(c) by ...", "Unreleased
#: - Downloaded at www.loopnet.de"; pushover-data: "pushover !", "Pushover neu!! 08-09"):
#: their game name of :data:`PACKAGE_ALBUM` is the album.
IGNORE_ALBUM_TAGS: frozenset[str] = frozenset({"nexuiz-music", "pushover-data"})
#: Album tag values that are not albums (miceamaze "ccMixter", "http://www.nosoapradio.us").
_NOT_AN_ALBUM = re.compile(r"^(ccmixter|non|none|n/?a)$|www\.|https?://|^\(c\)\s|©", re.I)

#: Music files outside a music folder, per package: globs (``fnmatch``) on the path inside
#: the package (for an archive member: the archive's folder + the member path). Each was
#: listed file by file in the games-full survey ("Rule changes needed", 1); files shorter
#: than :data:`MIN_SECONDS` (sound effects beside them) drop out as usual.
EXTRA_MUSIC: dict[str, tuple[str, ...]] = {
    "csmash-demosong": ("usr/share/games/csmash/*.ogg",),
    "wordwarvi-sound": ("usr/share/wordwarvi/sounds/*.ogg",),
    "tuxmath-data": ("usr/share/tuxmath/sounds/*.ogg",),
    "noiz2sa-data": ("usr/share/games/noiz2sa/sounds/*.ogg",),
    "a7xpg-data": ("usr/share/games/a7xpg/sounds/bgm*.ogg",),
    "parsec47-data": ("usr/share/games/parsec47/sounds/ptn*.ogg",),
    "rrootage-data": ("usr/share/games/rrootage/sounds/stg_*.ogg",),
    "tumiki-fighters-data": ("usr/share/games/tumiki-fighters/sounds/*.ogg",),
    "epiphany-data": ("usr/share/epiphany/sfx/epiphany_*.ogg",),  # game, menu and credits themes
    "hex-a-hop-data": ("usr/share/games/hex-a-hop/hex-a-hop/music-*.ogg",),
    "pushover-data": ("usr/share/pushover/themes/*.ogg",),
    "hannah-data": ("usr/share/games/hannah/bgm*.ogg",),
    "zaz-data": ("usr/share/games/zaz/mus*.ogg",),
    "abe-data": ("usr/share/games/abe/sounds/game.ogg", "usr/share/games/abe/sounds/intro.ogg"),
    "orbital-eunuchs-sniper-data": ("usr/share/games/orbital_eunuchs_sniper/oes.ogg",),
    "funnyboat": ("usr/share/games/funnyboat/data/*.ogg",),
    "powermanga-data": ("usr/share/games/powermanga/sound/handheld_console/music_*.ogg",),
    "nexuiz-music": ("usr/share/games/nexuiz/data/sound/cdtracks/*.ogg",),  # members of data/music.pk3
}
#: Files the rules above would take that are no soundtrack piece (survey: ambience, effects).
NOT_MUSIC: dict[str, tuple[str, ...]] = {
    "nexuiz-music": ("*/cdtracks/thunder.ogg",),  # 48 s thunder effect, no tags
    "ardentryst": ("*/Sounds/AMB_*",),  # ambience loops
}
#: The same music as a file of another package, re-cut or re-encoded, so the sha1 check of
#: :func:`build_from_trees` does not catch it: (path, other package, its file). Skipped when
#: the other package is part of the same build.
SAME_MUSIC: dict[str, tuple[tuple[str, str, str], ...]] = {
    # 200 s cut of "Through Space" (Maxstack, 234 s in singularity-music); games-full survey
    "starfighter-data": (("usr/share/starfighter/music/through_space.ogg", "singularity-music",
                          "usr/share/games/singularity/music/Through Space.ogg"),),
    # an Ogg rendering of fb-music-high's module (fb-music-high ships only this one of the three
    # snd/*zik*.ogg of frozen-bubble-data, so the other two are no duplicate of it)
    "frozen-bubble-data": (("usr/share/games/frozen-bubble/snd/frozen-mainzik-2p.ogg", "fb-music-high",
                            "usr/share/games/frozen-bubble/snd/frozen-mainzik-2p.xm"),),
}

#: The small tracker-module set for tests and CI (~34 MB of packages).
MINI_PACKAGES: tuple[str, ...] = (
    "heroes-sound-tracks", "tecnoballz-data", "biniax2-data", "pekka-kana-2-data",
    "gl-117-data", "pingus-data", "bomberclone-data", "fb-music-high",
)
#: Best value per megabyte of package (surveyed; ~640 MB of packages in all).
FULL_PACKAGES: tuple[str, ...] = MINI_PACKAGES + (
    "warzone2100-music", "planetblupi-music-ogg", "ufoai-music", "wesnoth-1.16-music",
    "asc-music", "singularity-music", "drascula-music",
)
#: ``games`` plus the 49 packages of the games-full survey (docs/games-full-survey.md:
#: music at most 100 MB of package per hour; tuxtype-data left out, its music is
#: byte-identical to tuxmath-data's), in the survey's order (MB per hour).
GAMES_FULL_PACKAGES: tuple[str, ...] = FULL_PACKAGES + (
    "ironseed-data", "pachi-data", "circuslinux-data", "open-invaders-data", "madbomber-data", "njam-data",
    "freedroid-data", "rafkill-data", "seahorse-adventures", "monsterz-data", "solarwolf", "csmash-demosong",
    "criticalmass-data", "wordwarvi-sound", "tuxmath-data", "noiz2sa-data", "davegnukem-data", "epiphany-data",
    "colobot-common-sounds", "parsec47-data", "angrydd", "amoebax-data", "hex-a-hop-data", "trackballs-data",
    "a7xpg-data", "tumiki-fighters-data", "nexuiz-music", "pushover-data", "hannah-data", "adonthell-data",
    "mu-cade-data", "zaz-data", "titanion-data", "marsshooter-data", "abe-data", "miceamaze", "rrootage-data",
    "orbital-eunuchs-sniper-data", "funnyboat", "tomatoes-data", "gunroar-data", "torus-trooper-data",
    "powermanga-data", "ardentryst", "hedgewars-data", "enigma-data", "starfighter-data", "lordsawar-data",
    "supertux-data",
)


@dataclass
class Candidate:
    """One music file found in an unpacked package."""

    package: str
    relpath: str  # path inside the package (archive members: archive folder + member)
    file: Path  # where it lies on disk now
    source: str  # provenance written to the catalog
    meta: dict = field(default_factory=dict)  # album.json entry, if any


def _is_music_path(rel: Path, *, package: str = "", relpath: str = "") -> bool:
    """Whether ``rel`` is music: a module anywhere, an audio file under a music folder or
    named by :data:`EXTRA_MUSIC`, unless :data:`NOT_MUSIC` names it. ``relpath``: the
    path inside the package the package globs are matched on (default ``rel``)."""
    full = relpath or rel.as_posix()
    if any(fnmatch.fnmatchcase(full, g) for g in NOT_MUSIC.get(package, ())):
        return False
    if any(fnmatch.fnmatchcase(full, g) for g in EXTRA_MUSIC.get(package, ())):
        return True
    ext = rel.suffix.lower()
    if ext in MODULE_EXT:
        return True
    return ext in AUDIO_EXT and any(p.lower() in MUSIC_DIRS for p in rel.parts[:-1])


def scan_package(package: str, *, root: Path) -> list[Candidate]:
    """Music files in an unpacked package tree (tracker modules anywhere; audio files
    under a music folder; music archives such as ufoai's ``0music.pk3`` unpacked)."""
    root = Path(root)
    found: list[Candidate] = []
    album_meta: dict[Path, dict] = {}
    for meta in sorted(root.rglob("album.json")):
        try:
            for fname, (author, album, title) in attribution.read_album_json(meta).items():
                album_meta[meta.parent / fname] = {"artist": author, "album": album, "title": title}
        except (ValueError, KeyError, OSError) as exc:
            log.warning("%s: unreadable album.json (%s); ignored", meta, exc)
    for path in sorted(root.rglob("*")):
        if not path.is_file() or ".unpacked" in path.parts:
            continue
        rel = path.relative_to(root)
        if path.suffix.lower() in ARCHIVE_EXT and "music" in path.name.lower():
            found.extend(_scan_archive(package, root, path))
        elif _is_music_path(rel, package=package):
            found.append(Candidate(package, rel.as_posix(), path, f"{package}:{rel.as_posix()}",
                                   album_meta.get(path, {})))
    return found


def _scan_archive(package: str, root: Path, archive: Path) -> list[Candidate]:
    rel_archive = archive.relative_to(root)
    dest = root / ".unpacked" / rel_archive
    out = []
    with zipfile.ZipFile(archive) as zf:
        for member in sorted(zf.namelist()):
            mrel = Path(member)
            relpath = (rel_archive.parent / member).as_posix()
            if member.endswith("/") or not _is_music_path(mrel, package=package, relpath=relpath):
                continue
            target = dest / member
            if not target.is_file():
                with atomic_path(target) as tmp:
                    tmp.write_bytes(zf.read(member))
            out.append(Candidate(package, relpath, target, f"{package}:{rel_archive.as_posix()}!{member}"))
    return out


def probe(path: Path) -> tuple[float, dict]:
    """(duration in seconds, lower-cased tags) of any file ffmpeg reads."""
    proc = tools.run([tools.ffprobe(), "-v", "error", "-show_entries",
                      "format=duration:format_tags:stream_tags", "-of", "json", str(path)], timeout=120)
    data = json.loads(proc.stdout or b"{}")
    fmt = data.get("format", {})
    tags: dict[str, str] = {}
    for src in [fmt.get("tags", {})] + [s.get("tags", {}) for s in data.get("streams", [])]:
        for k, v in (src or {}).items():
            tags.setdefault(k.lower(), str(v))
    try:
        duration = float(fmt.get("duration", "nan"))
    except ValueError:
        duration = float("nan")
    return duration, tags


def transcode(src: Path, *, dest: Path, sr: int = SAMPLE_RATE) -> None:
    """Decode ``src`` with ffmpeg to mono FLAC at ``sr`` Hz, written atomically.

    A tracker module is rendered by :func:`render_module` (deterministic or refused).
    """
    if src.suffix.lower() in MODULE_EXT:
        y = render_module(src, sr=sr)
        with atomic_path(dest, suffix=".flac") as tmp:
            soundfile.write(str(tmp), y, sr, format="FLAC", subtype="PCM_16")
        return
    with atomic_path(dest, suffix=".flac") as tmp:
        tools.run([tools.ffmpeg(), "-nostdin", "-v", "error", "-y", "-i", str(src), "-vn", "-ac", "1",
                   "-ar", str(sr), "-sample_fmt", "s16", "-c:a", "flac", "-f", "flac", str(tmp)], timeout=900)


def _decode_pcm(src: Path, *, sr: int) -> np.ndarray:
    """``src`` decoded by ffmpeg to 16-bit mono PCM at ``sr`` Hz."""
    proc = tools.run([tools.ffmpeg(), "-nostdin", "-v", "error", "-i", str(src), "-vn", "-ac", "1",
                      "-ar", str(sr), "-f", "s16le", "-"], timeout=900)
    return np.frombuffer(proc.stdout, dtype="<i2")


def render_module(src: Path, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Render a tracker module twice; its 16-bit samples if both renders agree.

    Raises :class:`CorpusError` when they differ (the module uses random effects that
    libopenmpt does not let us seed), so the corpus holds only reproducible audio.
    """
    data = src.read_bytes()
    fixed = derandomize_it(data) if src.suffix.lower() == ".it" else data
    with tempfile.TemporaryDirectory(prefix="musicrep-module-") as tmp:
        path = src
        if fixed != data:
            path = Path(tmp) / f"module{src.suffix.lower()}"
            path.write_bytes(fixed)
        first, second = _decode_pcm(path, sr=sr), _decode_pcm(path, sr=sr)
    if not np.array_equal(first, second):
        raise CorpusError("not reproducible: two renders differ (the module uses random effects)")
    return first


def derandomize_it(data: bytes) -> bytes:
    """An Impulse Tracker module with every instrument's random volume and panning
    variation (the ``RV`` and ``RP`` bytes of each ``IMPI`` header) set to zero.

    Anything that is not a well-formed IT file is returned unchanged.
    """
    if len(data) < 0xC0 or data[:4] != b"IMPM":
        return data
    n_orders, n_instruments = struct.unpack_from("<2H", data, 0x20)
    table = 0xC0 + n_orders
    if table + 4 * n_instruments > len(data):
        return data
    out = bytearray(data)
    for offset in struct.unpack_from(f"<{n_instruments}I", data, table):
        if offset + 0x1C <= len(data) and data[offset:offset + 4] == b"IMPI":
            out[offset + 0x1A] = 0  # RV: random volume variation, percent
            out[offset + 0x1B] = 0  # RP: random panning variation
    return bytes(out)


def _license(tags: dict, stanzas, relpath: str, copyright_text: str, package: str = "") -> str:
    if tags.get("license"):
        return tags["license"]
    hit = attribution.copyright_stanza(stanzas, relpath=relpath,
                                       strip_prefix=attribution.COPYRIGHT_PATH_PREFIX.get(package, ""))
    if hit and hit[1]:
        return hit[1]
    lic = attribution.package_license(stanzas) or attribution.PACKAGE_LICENSE.get(package, "")
    if lic:
        return lic
    if re.search(r"General Public License", copyright_text, re.I):
        version = re.search(r"version (\d)", copyright_text, re.I)
        return f"GPL-{version.group(1) if version else '2'}+ (debian/copyright)"
    return "see debian/copyright"


def _clean_title(text: str) -> str:
    text = re.sub(r"[<>\-=*~_]{2,}|^[<>\-\s]+|[<>\-\s]+$", " ", text or "").strip()
    return "" if not re.search(r"[A-Za-z]{2}", text) or text.lower() in ("(?)", "untitled") else text


def _album_tag(package: str, tags: dict) -> str:
    album = tags.get("album", "")
    return "" if package in IGNORE_ALBUM_TAGS or _NOT_AN_ALBUM.search(album) else album


def describe(cand: Candidate, *, tags: dict, copyright_text: str, stanzas,
             credits: attribution.Credits | None = None) -> dict:
    """Catalog fields of one probed file without decoding it: ``artist``,
    ``artist_source``, ``album``, ``title``, ``genre`` and ``license``.

    Parameters
    ----------
    cand : the file
    tags : its lower-cased tags as :func:`probe` gives them
    copyright_text, stanzas : its package's ``debian/copyright`` (text and parsed stanzas)
    credits : its package's credit files (:func:`attribution.read_credits`)
    """
    is_module = cand.file.suffix.lower() in MODULE_EXT
    easy = {} if is_module else {k: [v] for k, v in tags.items() if k in ("composer", "artist", "albumartist")}
    attr = attribution.attribute(
        package=cand.package,
        relpath=cand.relpath,
        tags=easy,
        metadata_artist=cand.meta.get("artist", ""),
        module_title=tags.get("title", "") if is_module else "",
        module_message=(tags.get("comment", "") or tags.get("message", "")) if is_module else "",
        stanzas=stanzas,
        credits=credits,
        title="" if is_module else tags.get("title", ""),
    )
    title = (("" if is_module else tags.get("title", "")) or cand.meta.get("title", "")
             or (_clean_title(tags.get("title", "")) if is_module else "") or Path(cand.relpath).stem)
    album = (("" if is_module else _album_tag(cand.package, tags)) or cand.meta.get("album", "")
             or PACKAGE_ALBUM.get(cand.package, cand.package))
    return {
        "artist": attr.artist,
        "artist_source": attr.source,
        "album": album,
        "title": title,
        "genre": tags.get("genre", "") if not is_module else "",
        "license": _license(tags, stanzas, cand.relpath, copyright_text, cand.package),
    }


def process(cand: Candidate, *, audio_dir: Path, copyright_text: str, stanzas,
            credits: attribution.Credits | None = None) -> tuple[Track | None, str]:
    """Probe, attribute and transcode one file. Returns (track, "") or (None, reason)."""
    duration, tags = probe(cand.file)
    if not duration == duration:  # NaN: ffprobe gave no duration
        return None, "no duration"
    if duration < MIN_SECONDS:
        return None, f"shorter than {MIN_SECONDS:.0f} s"
    fields = describe(cand, tags=tags, copyright_text=copyright_text, stanzas=stanzas, credits=credits)
    track_id = f"{slugify(cand.package, max_len=30)}--{slugify(Path(cand.relpath).stem, max_len=50)}"
    dest = audio_dir / slugify(cand.package, max_len=40) / f"{track_id}.flac"
    if not dest.is_file():
        transcode(cand.file, dest=dest)
    info = soundfile.info(str(dest))
    return Track(
        track_id=track_id,
        path=dest.relative_to(audio_dir.parent).as_posix(),
        artist=fields["artist"],
        album=fields["album"],
        title=fields["title"],
        genre=fields["genre"],
        duration=round(info.frames / info.samplerate, 3),
        extra={
            "license": fields["license"],
            "source": cand.source,
            "package": cand.package,
            "artist_source": fields["artist_source"],
        },
    ), ""


def same_music(cand: Candidate, *, packages) -> str:
    """The skip reason when :data:`SAME_MUSIC` names ``cand`` as a re-cut of a file of
    another package in ``packages`` (the packages of this build), else ""."""
    for path, other, other_file in SAME_MUSIC.get(cand.package, ()):
        if other in packages and fnmatch.fnmatchcase(cand.relpath, path):
            return f"same music as {other}:{other_file}"
    return ""


def build_from_trees(
    trees: dict[str, Path], *, out_dir: Path, workers: int = 2
) -> tuple[list[Track], list[dict]]:
    """Catalog rows and skip records for already-unpacked package trees.

    Parameters
    ----------
    trees : package name -> folder holding its unpacked files (``usr/...``)
    out_dir : corpus folder; audio goes to ``out_dir/audio/<package>/``
    workers : parallel ffmpeg processes

    Returns
    -------
    tracks : the usable tracks, sorted by track id
    skipped : ``{"source", "reason"}`` for each file left out
    """
    out_dir = Path(out_dir)
    tools.ffmpeg()  # fail early, naming the package to install
    tools.ffprobe()
    jobs = []
    skipped: list[dict] = []
    for package, root in sorted(trees.items()):
        text = debian.copyright_text(root, package=package)
        stanzas = attribution.parse_dep5(text)
        credits = attribution.read_credits(package, root=root)
        for cand in scan_package(package, root=root):
            reason = same_music(cand, packages=trees)
            if reason:  # a re-cut of a track another package of this build holds
                skipped.append({"source": cand.source, "reason": reason})
                continue
            jobs.append((cand, text, stanzas, credits))
    tracks: dict[str, Track] = {}
    seen_hash: dict[str, str] = {}
    unique = []
    for cand, text, stanzas, credits in jobs:  # the same bytes shipped twice count once
        digest = hashlib.sha1(cand.file.read_bytes()).hexdigest()
        if digest in seen_hash:
            skipped.append({"source": cand.source, "reason": f"duplicate of {seen_hash[digest]}"})
            continue
        seen_hash[digest] = cand.source
        unique.append((cand, text, stanzas, credits))

    def one(job):
        cand, text, stanzas, credits = job
        try:
            return cand, process(cand, audio_dir=out_dir / "audio", copyright_text=text, stanzas=stanzas,
                                 credits=credits)
        except Exception as exc:  # one bad file is logged and skipped, never fatal
            return cand, (None, f"error: {exc}")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for cand, (track, reason) in progress.bar(pool.map(one, unique), total=len(unique),
                                                  desc="soundtracks", unit="file"):
            if track is None:
                (log.warning if reason.startswith("error") else log.debug)("%s: skipped (%s)", cand.source, reason)
                skipped.append({"source": cand.source, "reason": reason})
            elif track.track_id in tracks:
                skipped.append({"source": cand.source, "reason": f"track id clash with {tracks[track.track_id].extra['source']}"})
            else:
                tracks[track.track_id] = track
    return _merge_album_spellings([tracks[k] for k in sorted(tracks)]), skipped


def _merge_album_spellings(tracks: list[Track]) -> list[Track]:
    """One spelling per album: "Ufo: Alien Invasion" joins "UFO: Alien Invasion"
    (the most common spelling wins, ties to the first in sort order)."""
    spellings: dict[str, Counter] = {}
    for t in tracks:
        spellings.setdefault(attribution.fold(t.album), Counter())[t.album] += 1
    best = {k: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, c in spellings.items()}
    return [t if best[attribution.fold(t.album)] == t.album
            else dataclasses.replace(t, album=best[attribution.fold(t.album)]) for t in tracks]


def build(
    packages: tuple[str, ...] | list[str], *, out_dir: Path, cache_dir: Path | None = None, workers: int = 2
) -> tuple[list[Track], list[dict], dict]:
    """Download (``apt-get download``), unpack and build the soundtrack corpus.

    Returns (tracks, skipped, info) where ``info`` holds the download size in bytes.
    """
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir else out_dir / ".cache" / "debs"
    debs = debian.download(list(packages), cache_dir=cache_dir)
    trees = {}
    for package, deb in progress.bar(debs.items(), desc="unpack", unit="pkg"):
        trees[package] = debian.extract(deb, dest=out_dir / ".cache" / "unpacked" / package)
    tracks, skipped = build_from_trees(trees, out_dir=out_dir, workers=workers)
    info = {
        "packages": {p: d.name for p, d in debs.items()},
        "download_bytes": sum(d.stat().st_size for d in debs.values()),
    }
    return tracks, skipped, info
