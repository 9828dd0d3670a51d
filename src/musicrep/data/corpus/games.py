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


@dataclass
class Candidate:
    """One music file found in an unpacked package."""

    package: str
    relpath: str  # path inside the package (archive members: archive folder + member)
    file: Path  # where it lies on disk now
    source: str  # provenance written to the catalog
    meta: dict = field(default_factory=dict)  # album.json entry, if any


def _is_music_path(rel: Path) -> bool:
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
        elif _is_music_path(rel):
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
            if member.endswith("/") or not _is_music_path(mrel):
                continue
            target = dest / member
            if not target.is_file():
                with atomic_path(target) as tmp:
                    tmp.write_bytes(zf.read(member))
            relpath = (rel_archive.parent / member).as_posix()
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


def _license(tags: dict, stanzas, relpath: str, copyright_text: str) -> str:
    if tags.get("license"):
        return tags["license"]
    hit = attribution.copyright_stanza(stanzas, relpath=relpath)
    if hit and hit[1]:
        return hit[1]
    lic = attribution.package_license(stanzas)
    if lic:
        return lic
    if re.search(r"General Public License", copyright_text, re.I):
        version = re.search(r"version (\d)", copyright_text, re.I)
        return f"GPL-{version.group(1) if version else '2'}+ (debian/copyright)"
    return "see debian/copyright"


def _clean_title(text: str) -> str:
    text = re.sub(r"[<>\-=*~_]{2,}|^[<>\-\s]+|[<>\-\s]+$", " ", text or "").strip()
    return "" if not re.search(r"[A-Za-z]{2}", text) or text.lower() in ("(?)", "untitled") else text


def process(cand: Candidate, *, audio_dir: Path, copyright_text: str, stanzas) -> tuple[Track | None, str]:
    """Probe, attribute and transcode one file. Returns (track, "") or (None, reason)."""
    duration, tags = probe(cand.file)
    if not duration == duration:  # NaN: ffprobe gave no duration
        return None, "no duration"
    if duration < MIN_SECONDS:
        return None, f"shorter than {MIN_SECONDS:.0f} s"
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
    )
    track_id = f"{slugify(cand.package, max_len=30)}--{slugify(Path(cand.relpath).stem, max_len=50)}"
    dest = audio_dir / slugify(cand.package, max_len=40) / f"{track_id}.flac"
    if not dest.is_file():
        transcode(cand.file, dest=dest)
    info = soundfile.info(str(dest))
    title = (("" if is_module else tags.get("title", "")) or cand.meta.get("title", "")
             or (_clean_title(tags.get("title", "")) if is_module else "") or Path(cand.relpath).stem)
    album = (("" if is_module else tags.get("album", "")) or cand.meta.get("album", "")
             or PACKAGE_ALBUM.get(cand.package, cand.package))
    return Track(
        track_id=track_id,
        path=dest.relative_to(audio_dir.parent).as_posix(),
        artist=attr.artist,
        album=album,
        title=title,
        genre=tags.get("genre", "") if not is_module else "",
        duration=round(info.frames / info.samplerate, 3),
        extra={
            "license": _license(tags, stanzas, cand.relpath, copyright_text),
            "source": cand.source,
            "package": cand.package,
            "artist_source": attr.source,
        },
    ), ""


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
    for package, root in sorted(trees.items()):
        text = debian.copyright_text(root, package=package)
        stanzas = attribution.parse_dep5(text)
        for cand in scan_package(package, root=root):
            jobs.append((cand, text, stanzas))
    skipped: list[dict] = []
    tracks: dict[str, Track] = {}
    seen_hash: dict[str, str] = {}
    unique = []
    for cand, text, stanzas in jobs:  # the same bytes shipped twice count once
        digest = hashlib.sha1(cand.file.read_bytes()).hexdigest()
        if digest in seen_hash:
            skipped.append({"source": cand.source, "reason": f"duplicate of {seen_hash[digest]}"})
            continue
        seen_hash[digest] = cand.source
        unique.append((cand, text, stanzas))

    def one(job):
        cand, text, stanzas = job
        try:
            return cand, process(cand, audio_dir=out_dir / "audio", copyright_text=text, stanzas=stanzas)
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
