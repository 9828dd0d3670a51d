"""Catalog of a folder of tagged audio: tags first, ``Artist/Album/NN Title.ext`` second.

Every audio file under the root becomes one track. Artist, album, title and
genre come from the file's tags (read with mutagen); a field the tags lack is
taken from the folder layout ``Artist/Album/NN Title.ext`` (a ``CD1``/``Disc 2``
folder under the album is looked through). Files that cannot be read are
logged by name and left out; the walk never stops on a bad file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable

from ..catalog import Catalog, Track
from ..errors import CatalogError
from .. import progress
from ._common import (
    AUDIO_EXTENSIONS,
    SkipLog,
    Skipped,
    check_not_empty,
    clean_text,
    normalize_extensions,
    stable_ids,
    unique_album_names,
)

log = logging.getLogger(__name__)

FIELDS: tuple[str, ...] = ("artist", "albumartist", "album", "title", "genre")

# ID3 frames (MP3 read without easy=True, WAV, AIFF) and ASF/WMA attributes.
_ID3_FRAMES = {"artist": "TPE1", "albumartist": "TPE2", "album": "TALB", "title": "TIT2", "genre": "TCON"}
_ASF_KEYS = {"artist": "Author", "albumartist": "WM/AlbumArtist", "album": "WM/AlbumTitle", "title": "Title", "genre": "WM/Genre"}
# Other key spellings (APEv2, MP4 without easy, some Vorbis writers).
_ALIASES = {"albumartist": ("albumartist", "album artist", "album_artist", "aart")}

VARIOUS_ARTISTS = "Various Artists"
_DISC_DIR = re.compile(r"^(cd|disc|disk)[\s_-]*\d+$", re.IGNORECASE)
_TRACK_NUMBER = re.compile(r"^(?:\d{1,2}[-.])?\d{1,3}(?:\s*[-._)]\s*|\s+)(?=\S)")


def layout_fields(rel: Path) -> dict[str, str]:
    """Artist, album and title from a path relative to the root.

    ``Artist/Album/NN Title.ext`` -> all three; ``Artist/Title.ext`` -> artist
    and title; ``Title.ext`` -> title only. Leading track numbers (``01 ``,
    ``01 - ``, ``1-01. ``) are removed from the title; a title that is only a
    number (``1979.mp3``) is kept.
    """
    parts = list(rel.parts[:-1])
    if parts and _DISC_DIR.match(parts[-1]) and len(parts) >= 2:
        parts = parts[:-1]
    stem = rel.stem
    title = _TRACK_NUMBER.sub("", stem, count=1)
    out = {"artist": "", "album": "", "title": clean_text(title)}
    if len(parts) >= 2:
        out["artist"], out["album"] = clean_text(parts[-2]), clean_text(parts[-1])
    elif len(parts) == 1:
        out["artist"] = clean_text(parts[0])
    return out


def _first(values) -> str:
    if values is None:
        return ""
    if isinstance(values, (str, bytes)):
        values = [values]
    try:
        items = list(values)
    except TypeError:
        items = [values]
    for v in items:
        v = getattr(v, "value", v)  # ASF attribute objects
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        text = clean_text(v)
        if text:
            return text
    return ""


def _tag_fields(tags) -> dict[str, str]:
    """artist/albumartist/album/title/genre from any mutagen tag object."""
    out = dict.fromkeys(FIELDS, "")
    if tags is None:
        return out
    from mutagen.asf import ASFTags
    from mutagen.id3 import ID3

    if isinstance(tags, ID3):
        for field, frame_id in _ID3_FRAMES.items():
            frames = tags.getall(frame_id)
            if not frames:
                continue
            frame = frames[0]
            values = frame.genres if frame_id == "TCON" else frame.text
            out[field] = _first(values)
        return out
    if isinstance(tags, ASFTags):
        for field, key in _ASF_KEYS.items():
            out[field] = _first(tags.get(key))
        return out
    try:
        lower = {str(k).lower(): k for k in tags.keys()}
    except Exception:  # tag types without keys(): nothing to read
        return out
    for field in FIELDS:
        for name in _ALIASES.get(field, (field,)):
            key = lower.get(name)
            if key is not None:
                out[field] = _first(tags[key])
                if out[field]:
                    break
    if not out["artist"] and "\xa9art" in lower:  # MP4 read without easy=True
        out["artist"] = _first(tags[lower["\xa9art"]])
    for field, atom in (("album", "\xa9alb"), ("title", "\xa9nam"), ("genre", "\xa9gen")):
        if not out[field] and atom in lower:
            out[field] = _first(tags[lower[atom]])
    return out


def _ffprobe_duration(path: Path) -> float | None:
    """Duration in seconds by ``ffprobe``; None when it is missing or cannot read the file."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    cmd = [exe, "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    try:
        seconds = float(out.stdout.strip().splitlines()[0]) if out.returncode == 0 and out.stdout.strip() else None
    except ValueError:  # 'N/A'
        seconds = None
    return seconds if seconds and seconds > 0 else None


def _probe(path: Path, *, read_tags: bool, with_duration: bool) -> tuple[dict[str, str], float | None]:
    """Tags and duration of one file.

    Raises ``ValueError`` when none of mutagen, soundfile and ffprobe reads it.
    """
    fields = dict.fromkeys(FIELDS, "")
    if not (read_tags or with_duration):
        return fields, None
    import mutagen

    duration = None
    mutagen_error = ""
    parsed = None
    try:
        parsed = mutagen.File(path, easy=True)
    except Exception as exc:  # mutagen raises many types for corrupt input
        mutagen_error = f"{type(exc).__name__}: {exc}"
    if parsed is not None:
        if read_tags:
            fields = _tag_fields(parsed.tags)
        length = getattr(getattr(parsed, "info", None), "length", None)
        if length and length > 0:
            duration = float(length)
    if parsed is None or (with_duration and duration is None):
        # mutagen does not know the format (or gave no length): soundfile decides
        import soundfile as sf

        try:
            if mutagen_error and path.suffix.lower() == ".mp3":
                # a broken MP3: libsndfile's mpg123 would only repeat it, noisily on stderr
                raise ValueError(mutagen_error)
            info = sf.info(str(path))
        except Exception as exc:
            if parsed is None:
                # last resort: what only ffmpeg decodes (tracker modules, some AAC/WebM)
                seconds = _ffprobe_duration(path)
                if seconds is None:
                    raise ValueError(mutagen_error or f"{type(exc).__name__}: {exc}") from None
                duration = seconds
        else:
            if info.frames > 0 and info.samplerate > 0:
                duration = info.frames / info.samplerate
    return fields, (duration if with_duration else None)


def _album_folder(rel: Path) -> str:
    """The album's folder: the file's folder, or its parent for ``CD1``/``Disc 2`` folders."""
    parts = list(rel.parts[:-1])
    if len(parts) >= 2 and _DISC_DIR.match(parts[-1]):
        parts = parts[:-1]
    return "/".join(parts)


def _set_album_owners(rows: list[dict]) -> None:
    """Set ``row["owner"]``, the artist an album belongs to.

    The album artist tag when there is one; otherwise the one artist of all
    tracks with the same album name in the same folder, or ``Various Artists``
    when they have several (a compilation without album artist tags).
    """
    artists: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        if not r["albumartist"] and r["album"]:
            artists.setdefault((r["album"], r["folder"]), set()).add(r["artist"])
    for r in rows:
        if r["albumartist"] or not r["album"]:
            r["owner"] = r["albumartist"] or r["artist"]
        else:
            names = artists[(r["album"], r["folder"])]
            r["owner"] = next(iter(names)) if len(names) == 1 else VARIOUS_ARTISTS


def _walk(root: Path, extensions: tuple[str, ...], skipped: SkipLog) -> list[Path]:
    """Relative paths of candidate audio files under ``root``, sorted."""
    found: list[Path] = []

    def onerror(exc: OSError) -> None:
        skipped.add(exc.filename, "cannot list folder", exc.strerror or str(exc))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                log.debug("not searching hidden folder %s", here / d)
                continue
            if Path(d).suffix.lower() in extensions:
                skipped.add(here / d, "folder named like an audio file", "searched as a folder", level=logging.INFO)
            if (here / d).is_symlink():
                log.info("not following the folder link %s", here / d)
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if Path(name).suffix.lower() not in extensions:
                continue
            if name.startswith("."):  # macOS '._x.mp3' resource forks and other hidden files
                skipped.add(here / name, "hidden file", level=logging.DEBUG)
                continue
            found.append((here / name).relative_to(root))
    found.sort(key=lambda p: p.as_posix())
    return found


def from_folder(
    root: str | Path,
    *,
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
    read_tags: bool = True,
    with_duration: bool = True,
    skipped: list[Skipped] | None = None,
) -> Catalog:
    """Build a catalog from every audio file under ``root`` (searched recursively).

    Parameters
    ----------
    root : folder to search; links to folders are not followed
    extensions : file name endings taken as audio (case-insensitive)
    read_tags : read artist/albumartist/album/title/genre tags with mutagen;
        when False (or for a field a file's tags lack) the layout
        ``Artist/Album/NN Title.ext`` is used
    with_duration : read each file's duration in seconds (mutagen, else soundfile)
    skipped : if given, a list that receives one :class:`Skipped` per file left out

    Returns
    -------
    Catalog
        One track per readable file, sorted by relative path. ``track_id`` is
        the slug of the relative path (see :func:`stable_ids`); ``path`` is
        absolute. Extra columns: ``albumartist`` (tag, may be empty) and
        ``album_id`` (``owner/album``; the owner is the album artist tag, else
        the album's one artist, else ``Various Artists``). An album name that
        several artists use gets the album artist appended
        (``"Greatest Hits [Queen]"``, see :func:`unique_album_names`).

    Raises
    ------
    CatalogError
        If ``root`` is not a folder or holds no usable audio file.
    """
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise CatalogError(f"{root}: not a folder; give the folder that holds the audio files")
    exts = normalize_extensions(extensions)
    skips = SkipLog(skipped, logger=log)
    candidates = _walk(root, exts, skips)
    rows = []
    for rel in progress.bar(candidates, desc="reading tags", unit="file"):
        path = root / rel
        if path.is_symlink() and not path.exists():
            skips.add(path, "broken link", os.readlink(path))
            continue
        if not path.is_file():
            skips.add(path, "not a regular file")
            continue
        try:
            size = path.stat().st_size
        except OSError as exc:
            skips.add(path, "cannot read file", exc.strerror or str(exc))
            continue
        if size == 0:
            skips.add(path, "empty file")
            continue
        try:
            tags, duration = _probe(path, read_tags=read_tags, with_duration=with_duration)
        except ValueError as exc:
            skips.add(path, "cannot read audio", str(exc))
            continue
        except OSError as exc:
            skips.add(path, "cannot read file", exc.strerror or str(exc))
            continue
        layout = layout_fields(rel)
        rows.append(
            dict(
                rel=rel.as_posix(),
                folder=_album_folder(rel),
                path=str(path),
                artist=tags["artist"] or tags["albumartist"] or layout["artist"],
                album=tags["album"] or layout["album"],
                albumartist=tags["albumartist"],
                title=tags["title"] or layout["title"],
                genre=tags["genre"],
                duration=duration,
            )
        )
    _set_album_owners(rows)
    # the id leaves out the file ending; 'song.mp3' and 'song.flac' differ by their hash suffix
    ids = stable_ids((r["rel"] for r in rows), slug_of=lambda rel: rel[: -len(Path(rel).suffix) or None])
    tracks = [
        Track(track_id=tid, path=r["path"], artist=r["artist"], album=r["album"], title=r["title"],
              genre=r["genre"], duration=r["duration"],
              extra={"albumartist": r["albumartist"], "album_id": f"{r['owner']}/{r['album']}" if r["album"] else ""})
        for tid, r in zip(ids, rows)
    ]
    tracks = unique_album_names(tracks, [r["owner"] for r in rows])
    catalog = Catalog(tracks, source=str(root))
    log.info("%s: %d tracks, %d files skipped", root, len(catalog), len(skips.records))
    return check_not_empty(catalog, skips, where=str(root), what=f"audio files ending in {', '.join(exts)}")
