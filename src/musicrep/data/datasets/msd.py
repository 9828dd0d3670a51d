"""Catalog of the Million Song Dataset: ``track_metadata.db`` joined to audio by track id.

The SQLite table ``songs`` holds track_id, title, song_id, release, artist_id,
artist_mbid, artist_name, duration, artist_familiarity, artist_hotttnesss,
year, track_7digitalid, shs_perf and shs_work. Audio files are found anywhere
under the audio folder by name: ``TRAAAAK128F9318786.mp3`` (or ``.clip.mp3``,
``.wav``, ...), flat or in ``A/A/A/`` folders.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from pathlib import Path

from ... import progress
from ...errors import CatalogError
from ..catalog import Catalog, Track
from ._common import (
    AUDIO_EXTENSIONS,
    SkipLog,
    Skipped,
    check_not_empty,
    clean_text,
    unique_album_names,
)

log = logging.getLogger(__name__)

REQUIRED: tuple[str, ...] = ("track_id", "title", "release", "artist_id", "artist_name", "duration")
OPTIONAL: tuple[str, ...] = ("song_id", "year", "track_7digitalid")
_TRACK_ID = re.compile(r"^(TR[A-Z0-9]{16})\.", re.IGNORECASE)


def index_audio(audio_dir: str | Path, *, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> dict[str, Path]:
    """``{track_id: path}`` for every audio file under ``audio_dir`` named after an MSD track id.

    When one id has several files, the first in sorted path order wins (logged).
    """
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(audio_dir):
        dirnames.sort()
        for name in sorted(filenames):
            m = _TRACK_ID.match(name)
            if not m or Path(name).suffix.lower() not in extensions:
                continue
            tid = m.group(1).upper()
            path = Path(dirpath) / name
            if tid in found:
                log.info("%s: track %s already has %s; ignoring this file", path, tid, found[tid])
                continue
            found[tid] = path
    return found


def _connect(db_path: Path) -> sqlite3.Connection:
    if not db_path.is_file():
        raise CatalogError(f"{db_path}: MSD track_metadata.db not found")
    try:
        con = sqlite3.connect(f"{db_path.absolute().as_uri()}?mode=ro", uri=True)
        cols = [r[1] for r in con.execute("PRAGMA table_info(songs)")]
    except sqlite3.DatabaseError as exc:
        raise CatalogError(f"{db_path}: not an SQLite database ({exc})") from None
    if not cols:
        con.close()
        raise CatalogError(f"{db_path}: no table 'songs'; is this the MSD's track_metadata.db?")
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        con.close()
        raise CatalogError(f"{db_path}: table songs lacks column(s) {', '.join(missing)}")
    return con


def from_msd(
    db_path: str | Path,
    *,
    audio_dir: str | Path,
    skipped: list[Skipped] | None = None,
) -> Catalog:
    """Build a catalog from the MSD's ``track_metadata.db`` and a folder of audio.

    Parameters
    ----------
    db_path : ``track_metadata.db`` (opened read-only)
    audio_dir : folder searched recursively for files named ``<track_id>.<ext>``
    skipped : if given, a list that receives one :class:`Skipped` per database
        row without audio (item = the track id), per empty audio file, and per
        audio file whose id is not in the database

    Returns
    -------
    Catalog
        ``track_id`` = MSD id, artist = ``artist_name``, album = ``release``
        (``"Greatest Hits [Casual]"`` where artists share a release name, see
        :func:`unique_album_names`), title, duration (seconds); genre empty (the MSD has none here). Extra
        columns: ``artist_id``, ``album_id`` = ``artist_id/release`` (so two
        artists' "Greatest Hits" are two albums), ``song_id``, ``year``,
        ``track_7digitalid``. Sorted by track id.
    """
    db_path = Path(db_path)
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise CatalogError(f"{audio_dir}: audio folder not found")
    con = _connect(db_path)
    cols = [r[1] for r in con.execute("PRAGMA table_info(songs)")]
    wanted = list(REQUIRED) + [c for c in OPTIONAL if c in cols]
    audio = index_audio(audio_dir)
    log.info("%s: %d audio files named by MSD track id", audio_dir, len(audio))
    skips = SkipLog(skipped, logger=log)
    try:
        tracks, seen = _tracks_from_db(con, wanted=wanted, audio=audio, db_path=db_path, skips=skips)
    except sqlite3.DatabaseError as exc:
        raise CatalogError(f"{db_path}: cannot read table songs ({exc})") from None
    finally:
        con.close()
    for tid in sorted(set(audio) - seen):
        skips.add(audio[tid], reason="not in track_metadata.db", detail=f"track {tid}")
    n_missing = skips.counts().get("no audio file", 0)
    log.info("%s: %d tracks with audio, %d rows without audio", db_path, len(tracks), n_missing)
    catalog = Catalog(unique_album_names(tracks, owners=[t.artist for t in tracks]), source=str(db_path))
    return check_not_empty(catalog, skipped=skips, where=str(db_path), what=f"no track has audio under {audio_dir}")


def _tracks_from_db(
    con: sqlite3.Connection, *, wanted: list[str], audio: dict[str, Path], db_path: Path, skips: SkipLog
) -> tuple[list[Track], set[str]]:
    """One Track per database row with audio, in track id order; also every track id read."""
    tracks: list[Track] = []
    seen: set[str] = set()
    query = f"SELECT {', '.join(wanted)} FROM songs ORDER BY track_id"
    for values in progress.bar(con.execute(query), desc="reading track_metadata.db", unit="row"):
        tid = str(values[0] or "").strip().upper()  # track_id is the first column selected
        if not tid or tid in seen:
            continue
        seen.add(tid)
        path = audio.get(tid)
        if path is None:
            skips.add(tid, reason="no audio file", level=logging.DEBUG)
            continue
        row = dict(zip(wanted, values))
        if path.stat().st_size == 0:
            skips.add(path, reason="empty file", detail=f"MSD track {tid}")
            continue
        tracks.append(_track(row, tid=tid, path=path, db_path=db_path))
    return tracks, seen


def _track(row: dict, *, tid: str, path: Path, db_path: Path) -> Track:
    """The catalog's Track for one ``songs`` row (see :func:`from_msd` for the columns)."""
    artist_id = clean_text(row["artist_id"])
    release = clean_text(row["release"])
    try:
        duration = float(row["duration"]) if row["duration"] not in (None, "") else None
    except (TypeError, ValueError):
        raise CatalogError(f"{db_path}: track {tid} has duration {row['duration']!r}, not seconds") from None
    extra = {
        "artist_id": artist_id,
        "album_id": f"{artist_id}/{release}" if release else "",
    }
    for c in OPTIONAL:
        if c in row:
            extra[c] = "" if row[c] is None else clean_text(row[c])
    return Track(
        track_id=tid,
        path=str(path.absolute()),
        artist=clean_text(row["artist_name"]),
        album=release,
        title=clean_text(row["title"]),
        duration=duration if duration and duration > 0 else None,
        extra=extra,
    )
