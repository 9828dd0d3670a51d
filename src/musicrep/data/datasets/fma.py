"""Catalog of the Free Music Archive (FMA) from its ``tracks.csv`` and audio folder.

``fma_metadata/tracks.csv`` has three header lines: the column group
(``album``, ``artist``, ``set``, ``track``), the field within the group
(``title``, ``name``, ``genre_top``, ...), and ``track_id`` naming the index
column. Audio lives at ``AUDIO_DIR/NNN/NNNNNN.mp3`` (six-digit track id, folder
= its first three digits), as unpacked from ``fma_small.zip`` etc.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from ... import progress
from ...errors import CatalogError, ConfigError
from ..catalog import Catalog, Track
from ._common import SkipLog, Skipped, check_audio_file, check_not_empty, clean_text, unique_album_names

log = logging.getLogger(__name__)

#: Nested subsets, smallest first: ``set.subset`` names the smallest one holding a track.
SUBSETS: tuple[str, ...] = ("small", "medium", "large")
VALID_SUBSETS: tuple[str, ...] = SUBSETS + ("full",)
SPLITS: dict[str, str] = {"training": "train", "validation": "valid", "test": "test"}
REQUIRED: tuple[str, ...] = ("artist.name", "album.title", "track.title")


def audio_path(audio_dir: str | Path, *, track_id: int) -> Path:
    """``audio_dir/000/000002.mp3`` for track 2."""
    tid = f"{int(track_id):06d}"
    return Path(audio_dir) / tid[:3] / f"{tid}.mp3"


def _header(rows, path: Path) -> tuple[list[str], dict[str, int]]:
    try:
        groups, fields = next(rows), next(rows)
    except StopIteration:
        raise CatalogError(f"{path}: fewer than 2 lines; FMA's tracks.csv starts with 3 header lines") from None
    if len(groups) != len(fields):
        raise CatalogError(f"{path}: the two header lines have {len(groups)} and {len(fields)} fields")
    names = [f"{g.strip()}.{f.strip()}" for g, f in zip(groups, fields)]
    index = {n: i for i, n in enumerate(names) if n != "."}
    missing = [c for c in REQUIRED if c not in index]
    if missing:
        raise CatalogError(
            f"{path}: missing column(s) {', '.join(missing)}; is this FMA's fma_metadata/tracks.csv? "
            "Its first line holds the groups (album, artist, set, track), its second the fields"
        )
    return names, index


def from_fma(
    tracks_csv: str | Path,
    *,
    audio_dir: str | Path,
    subset: str | None = None,
    skipped: list[Skipped] | None = None,
) -> Catalog:
    """Build a catalog from FMA's ``tracks.csv`` and a folder of its MP3s.

    Parameters
    ----------
    tracks_csv : ``fma_metadata/tracks.csv``
    audio_dir : the unpacked audio, e.g. ``fma_small/`` (holds ``000/000002.mp3``)
    subset : ``"small"``, ``"medium"``, ``"large"`` or ``"full"``; subsets are
        nested, so ``"medium"`` keeps tracks marked small or medium. None keeps
        every track that has audio.
    skipped : if given, a list that receives one :class:`Skipped` per track left out
        (the audio file is missing or empty)

    Returns
    -------
    Catalog
        ``track_id`` is FMA's id (``"2"``); artist = ``artist.name``, album =
        ``album.title`` (with `` [artist]`` appended where two FMA albums
        share a title, see :func:`unique_album_names`), title = ``track.title``, genre = ``track.genre_top``,
        duration = ``track.duration`` (seconds of the full track: the clips of
        fma_small/medium/large are 30 s). Extra columns: ``album_id``,
        ``artist_id``, ``subset``, ``split`` (train/valid/test), ``label`` (``track.publisher``,
        else ``artist.associated_labels``) and ``year`` (of ``album.date_released``, else
        ``track.date_recorded``).

    Raises
    ------
    CatalogError
        If the file is missing, lacks a required column, or no track has audio.
    ConfigError
        If ``subset`` is not one of :data:`VALID_SUBSETS`.
    """
    path = Path(tracks_csv)
    audio_dir = Path(audio_dir)
    _check_inputs(path, audio_dir=audio_dir, subset=subset)
    keep = None if subset in (None, "full", "large") else set(SUBSETS[: SUBSETS.index(subset) + 1])
    skips = SkipLog(skipped, logger=log)
    tracks, n_rows, n_other_subset = _read_tracks(path, audio_dir=audio_dir, keep=keep, subset=subset, skips=skips)
    catalog = Catalog(unique_album_names(tracks, owners=[t.artist for t in tracks]), source=str(path))
    n_missing = skips.counts().get("no audio file", 0)
    # Without a subset, most of the 106,574 rows have no audio in a subset's folder: routine.
    level = logging.WARNING if subset is not None and n_missing else logging.INFO
    log.log(
        level,
        "%s: %d of %d tracks kept (%d outside subset %s, %d without audio in %s)",
        path, len(catalog), n_rows, n_other_subset, subset, n_missing, audio_dir,
    )
    return check_not_empty(catalog, skipped=skips, where=str(path), what=f"no listed track has audio under {audio_dir}")


def _check_inputs(path: Path, *, audio_dir: Path, subset: str | None) -> None:
    """Raise :class:`ConfigError` for an unknown subset, :class:`CatalogError` for a missing input."""
    if subset is not None and subset not in VALID_SUBSETS:
        raise ConfigError(f"subset {subset!r} is not one of {', '.join(VALID_SUBSETS)}")
    if not path.is_file():
        raise CatalogError(f"{path}: FMA tracks.csv not found (it is in fma_metadata.zip)")
    if not audio_dir.is_dir():
        raise CatalogError(f"{audio_dir}: FMA audio folder not found; give the folder holding 000/, 001/, ...")


def _read_tracks(
    path: Path, *, audio_dir: Path, keep: set[str] | None, subset: str | None, skips: SkipLog
) -> tuple[list[Track], int, int]:
    """Open ``tracks.csv``, read its header and its rows: ``(tracks, rows read, rows outside the subset)``."""
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # artist bios can exceed csv's 128 kB default
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = csv.reader(fh)
            names, col = _header(rows, path)
            if keep is not None and "set.subset" not in col:
                raise CatalogError(f"{path}: no set.subset column, so subset={subset!r} cannot be applied")
            return _tracks_from_rows(rows, path=path, n_cols=len(names), col=col, audio_dir=audio_dir, keep=keep,
                                     skips=skips)
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise CatalogError(f"{path}: malformed CSV ({exc})") from None
    finally:
        csv.field_size_limit(old_limit)


def _tracks_from_rows(
    rows, *, path: Path, n_cols: int, col: dict[str, int], audio_dir: Path, keep: set[str] | None, skips: SkipLog
) -> tuple[list[Track], int, int]:
    """One Track per data row in the subset whose MP3 is there; the rest counted or recorded in ``skips``."""
    tracks: list[Track] = []
    n_rows = n_other_subset = 0
    for row in progress.bar(rows, desc="reading tracks.csv", unit="row"):
        where = f"{path}:{rows.line_num}"
        if not row or not any(cell.strip() for cell in row[1:]):
            continue  # the third header line ('track_id,,,...') or a blank line
        tid = _track_id(row, where=where, n_cols=n_cols)
        n_rows += 1
        subset_value = _cell(row, col, "set.subset")
        if keep is not None and subset_value not in keep:
            n_other_subset += 1
            continue
        mp3 = audio_path(audio_dir, track_id=tid)
        if not check_audio_file(mp3, skips=skips, detail=f"FMA track {tid}", missing_level=logging.DEBUG):
            continue
        tracks.append(_track(row, col, tid=tid, mp3=mp3, subset_value=subset_value, where=where))
    return tracks, n_rows, n_other_subset


def _track_id(row: list[str], *, where: str, n_cols: int) -> int:
    """The row's track id, after checking its width against the header's."""
    if len(row) != n_cols:
        raise CatalogError(f"{where}: {len(row)} fields but the header has {n_cols}")
    try:
        return int(row[0])
    except ValueError:
        raise CatalogError(f"{where}: track id {row[0]!r} is not a number") from None


def _cell(row: list[str], col: dict[str, int], name: str) -> str:
    """Column ``name`` of ``row`` as clean text; "" when the file has no such column."""
    i = col.get(name)
    return clean_text(row[i]) if i is not None and i < len(row) else ""


def _track(row: list[str], col: dict[str, int], *, tid: int, mp3: Path, subset_value: str, where: str) -> Track:
    """The catalog's Track for one FMA row (see :func:`from_fma` for the columns)."""
    raw_split = _cell(row, col, "set.split").lower()
    split = SPLITS.get(raw_split, raw_split)
    duration = _cell(row, col, "track.duration")
    try:
        seconds = float(duration) if duration else None
    except ValueError:
        raise CatalogError(f"{where}: track.duration {duration!r} is not a number of seconds") from None
    return Track(
        track_id=str(tid),
        path=str(mp3.absolute()),
        artist=_cell(row, col, "artist.name"),
        album=_cell(row, col, "album.title"),
        title=_cell(row, col, "track.title"),
        genre=_cell(row, col, "track.genre_top"),
        duration=seconds,
        extra={
            "album_id": _cell(row, col, "album.id"),
            "artist_id": _cell(row, col, "artist.id"),
            "subset": subset_value,
            "split": split,
            # columns a model can learn as concepts (--concept label)
            "label": _cell(row, col, "track.publisher") or _cell(row, col, "artist.associated_labels"),
            "year": _year(_cell(row, col, "album.date_released") or _cell(row, col, "track.date_recorded")),
        },
    )


def _year(date: str) -> str:
    """The year of an FMA date (``2008-11-26 01:44:45``, ``11/26/2008``), "" when there is none."""
    found = re.search(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)", date or "")
    return found.group(1) if found else ""
