"""Catalog of a folder of tagged audio: tags first, ``Artist/Album/NN Title.ext`` second.

Every audio file under the root becomes one track. Artist, album, title and
genre come from the file's tags (read with mutagen); a field the tags lack is
taken from the folder layout ``Artist/Album/NN Title.ext`` (a ``CD1``/``Disc 2``
folder under the album is looked through). Files that cannot be read are
logged by name and left out; the walk never stops on a bad file.

A folder name becomes an artist only where the layout says it is one. The
artist stays empty (a wrong artist would be a class of its own in training
and in the maps; an empty one only keeps the song out of the artist split)
for an untagged file

* directly in the searched folder (``song.mp3``);
* whose would-be artist folder has a name no artist folder has
  (:data:`NOT_ARTIST_FOLDERS`: ``Downloads``, ``Desktop``, ``New folder (2)``,
  ``Unknown Artist``, ...; compared case-blind, a trailing number dropped);
* directly in a top-level folder that holds no album folder, only files
  named like a ripper's or browser's default (``track03``, ``Audio Track 3``,
  ``07``), while other top-level folders follow ``Artist/Album/``: a
  ``stuff/track03.mp3`` beside ``Queen/Jazz/``.

Anything else keeps the layout's guess, so ``Artist/Title.ext`` libraries
and ``Solo/1979.flac`` beside ``Artist/Album/`` folders keep their artists.
One warning line says how many files got no artist and why.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from ... import progress
from ...errors import CatalogError, UnreadableAudioError
from ..catalog import Catalog, Track
from ._common import (
    AUDIO_EXTENSIONS,
    SkipLog,
    Skipped,
    check_not_empty,
    clean_text,
    found_file_problem,
    normalize_extensions,
    stable_ids,
    unique_album_names,
)
from .audio_tags import EXTRA_FIELDS, probe_file

log = logging.getLogger(__name__)


VARIOUS_ARTISTS = "Various Artists"
_DISC_DIR = re.compile(r"^(cd|disc|disk)[\s_-]*\d+$", re.IGNORECASE)
_TRACK_NUMBER = re.compile(r"^(?:\d{1,2}[-.])?\d{1,3}(?:\s*[-._)]\s*|\s+)(?=\S)")
#: Folder names (case-folded) that hold music but never name its artist.
NOT_ARTIST_FOLDERS: frozenset[str] = frozenset({
    "audio", "desktop", "documents", "download", "downloads", "incoming", "inbox", "misc", "miscellaneous",
    "mp3", "mp3s", "music", "my music", "new folder", "songs", "temp", "tmp", "unknown", "unknown artist",
    "unsorted", "untitled", "untitled folder",
})
_COPY_NUMBER = re.compile(r"\s*(?:\(\d+\)|\d+)$")  # "New folder (2)", "Untitled Folder 3"
# A ripper's or downloader's default file name: it says nothing of the song.
_DEFAULT_NAME = re.compile(r"^(?:(?:audio[\s_-]*)?track|piste|pista|titel|untitled|unknown)[\s_.-]*\d*$|^\d{1,3}$",
                           re.IGNORECASE)


def layout_fields(rel: Path) -> dict[str, str]:
    """Artist, album and title from a path relative to the root.

    ``Artist/Album/NN Title.ext`` -> all three; ``Artist/Title.ext`` -> artist
    and title; ``Title.ext`` -> title only. Leading track numbers (``01 ``,
    ``01 - ``, ``1-01. ``) are removed from the title; a title that is only a
    number (``1979.mp3``) is kept. A would-be artist folder named in
    :data:`NOT_ARTIST_FOLDERS` (``Downloads/track03.mp3``) gives no artist.
    The key ``no_artist`` says why the artist is empty (``""`` when it is not).
    """
    parts = _layout_folders(rel)
    stem = rel.stem
    title = _TRACK_NUMBER.sub("", stem, count=1)
    out = {"artist": "", "album": "", "title": clean_text(title), "no_artist": ""}
    if len(parts) >= 2:
        out["artist"], out["album"] = clean_text(parts[-2]), clean_text(parts[-1])
    elif len(parts) == 1:
        out["artist"] = clean_text(parts[0])
    else:
        out["no_artist"] = "directly in the folder searched"
    if out["artist"] and _never_an_artist(out["artist"]):
        out["artist"], out["no_artist"] = "", f"in {out['artist']}/, a folder name that is never an artist's"
    return out


def _layout_folders(rel: Path) -> list[str]:
    """The folders of ``rel`` that the layout reads, a ``CD1``/``Disc 2`` folder looked through."""
    parts = list(rel.parts[:-1])
    if len(parts) >= 2 and _DISC_DIR.match(parts[-1]):
        parts = parts[:-1]
    return parts


def _never_an_artist(folder: str) -> bool:
    return _COPY_NUMBER.sub("", folder).casefold() in NOT_ARTIST_FOLDERS


def loose_folders(rels: Sequence[Path]) -> set[str]:
    """Top-level folders that hold loose files, not an artist's songs (see the module docstring).

    Such a folder holds files directly (``stuff/track03.mp3``), all named like
    a ripper's default, and no album folder, while another top-level folder
    holds one (the library is laid out ``Artist/Album/``).

    Parameters
    ----------
    rels : every audio file's path relative to the searched folder
    """
    with_albums = {parts[0] for parts in map(_layout_folders, rels) if len(parts) >= 2}
    if not with_albums:
        return set()  # an Artist/Title.ext library: every folder is an artist
    loose: dict[str, bool] = {}
    for rel in rels:
        parts = _layout_folders(rel)
        if len(parts) == 1 and parts[0] not in with_albums:
            loose[parts[0]] = loose.get(parts[0], True) and bool(_DEFAULT_NAME.match(rel.stem.strip()))
    return {folder for folder, default_names in loose.items() if default_names}


def _log_no_artist(reasons: list[str]) -> None:
    """One warning line: how many untagged files got no artist, and why."""
    if not reasons:
        return
    counts = Counter(reasons)
    why = "; ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda rn: (-rn[1], rn[0])))
    log.warning("%d file(s) have neither an artist tag nor an artist folder, so no artist (they stay out of the "
                "artist split): %s; tag them, or put them in Artist/Album/ folders", len(reasons), why)


def _album_folder(rel: Path) -> str:
    """The album's folder: the file's folder, or its parent for ``CD1``/``Disc 2`` folders."""
    return "/".join(_layout_folders(rel))


def _album_id(row: dict) -> str:
    """``owner/album``; an album without an owner (in ``Downloads/Album/``) is its folder, not ``/Album``."""
    if not row["album"]:
        return ""
    return f"{row['owner']}/{row['album']}" if row["owner"] else row["folder"]


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
        skipped.add(exc.filename, reason="cannot list folder", detail=exc.strerror or str(exc))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                log.debug("not searching hidden folder %s", here / d)
                continue
            if Path(d).suffix.lower() in extensions:
                skipped.add(here / d, reason="folder named like an audio file", detail="searched as a folder",
                            level=logging.INFO)
            if (here / d).is_symlink():
                log.info("not following the folder link %s", here / d)
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if Path(name).suffix.lower() not in extensions:
                continue
            if name.startswith("."):  # macOS '._x.mp3' resource forks and other hidden files
                skipped.add(here / name, reason="hidden file", level=logging.DEBUG)
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
        the album's one artist, else ``Various Artists``; an album without
        artist is its folder). ``track_id`` keeps letters of every script
        (``헤로즈/01 영웅.mp3`` -> ``헤로즈-01-영웅``). An album name that
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
    rows, no_artist = _read_files(root, candidates=candidates, read_tags=read_tags, with_duration=with_duration,
                                  skips=skips)
    _log_no_artist(no_artist)
    _set_album_owners(rows)
    tracks = unique_album_names(_tracks(rows), owners=[r["owner"] for r in rows])
    catalog = Catalog(tracks, source=str(root))
    log.info("%s: %d tracks, %d files skipped", root, len(catalog), len(skips.records))
    return check_not_empty(catalog, skipped=skips, where=str(root), what=f"audio files ending in {', '.join(exts)}")


def _read_files(
    root: Path, *, candidates: list[Path], read_tags: bool, with_duration: bool, skips: SkipLog
) -> tuple[list[dict], list[str]]:
    """One row per readable file (tags and layout merged), and why each untagged file got no artist."""
    loose = loose_folders(candidates)
    no_artist: list[str] = []
    rows = []
    for rel in progress.bar(candidates, desc="reading tags", unit="file"):
        path = root / rel
        problem = found_file_problem(path)
        if problem is not None:
            reason, detail = problem
            skips.add(path, reason=reason, detail=detail)
            continue
        try:
            tags, duration = probe_file(path, read_tags=read_tags, with_duration=with_duration)
        except UnreadableAudioError as exc:
            skips.add(path, reason="cannot read audio", detail=exc.detail)
            continue
        except ValueError as exc:  # a tag block mutagen parsed but whose values do not convert
            skips.add(path, reason="cannot read audio", detail=str(exc))
            continue
        except OSError as exc:
            skips.add(path, reason="cannot read file", detail=exc.strerror or str(exc))
            continue
        layout = _file_layout(rel, loose=loose)
        row = _row(rel, path=path, tags=tags, layout=layout, duration=duration)
        if not row["artist"] and layout["no_artist"]:
            no_artist.append(layout["no_artist"])
        rows.append(row)
    return rows, no_artist


def _file_layout(rel: Path, *, loose: set[str]) -> dict[str, str]:
    """:func:`layout_fields`, with no artist for a file directly in a loose folder (see :func:`loose_folders`)."""
    layout = layout_fields(rel)
    if len(_layout_folders(rel)) == 1 and rel.parts[0] in loose:
        layout["artist"], layout["no_artist"] = "", (
            f"in {rel.parts[0]}/, which holds default file names (track01, 03, ...) and no album folder, "
            "beside Artist/Album/ folders")
    return layout


def _row(rel: Path, *, path: Path, tags: dict[str, str], layout: dict[str, str], duration: float | None) -> dict:
    """One file's catalog fields: each tag, else what the layout says."""
    return dict(
        rel=rel.as_posix(),
        folder=_album_folder(rel),
        path=str(path),
        artist=tags["artist"] or tags["albumartist"] or layout["artist"],
        album=tags["album"] or layout["album"],
        albumartist=tags["albumartist"],
        title=tags["title"] or layout["title"],
        genre=tags["genre"],
        duration=duration,
        **{f: tags[f] for f in EXTRA_FIELDS},
    )


def _tracks(rows: list[dict]) -> list[Track]:
    """Tracks of the rows (owners set), with ids from their relative paths."""
    # the id leaves out the file ending; 'song.mp3' and 'song.flac' differ by their hash suffix
    ids = stable_ids((r["rel"] for r in rows), slug_of=lambda rel: rel[: -len(Path(rel).suffix) or None])
    return [
        Track(track_id=tid, path=r["path"], artist=r["artist"], album=r["album"], title=r["title"],
              genre=r["genre"], duration=r["duration"],
              extra={"albumartist": r["albumartist"], "album_id": _album_id(r), **{f: r[f] for f in EXTRA_FIELDS}})
        for tid, r in zip(ids, rows)
    ]
