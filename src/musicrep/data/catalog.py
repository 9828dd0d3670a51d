"""The track table: one row per song, with the metadata the method learns from.

A catalog is a CSV with at least the columns of :data:`COLUMNS`. Any other column
(``split``, ``license``, ``source``, ...) is kept as it is in :attr:`Track.extra`.
Builders for public datasets' own metadata files live in :mod:`musicrep.data.datasets`.

The label columns (:data:`LABEL_COLUMNS`) are normalised whenever a :class:`Track`
is made, so text that only looks different is one label: Unicode NFC, zero-width
characters removed, runs of whitespace (line breaks included) made one space.
Splits and probes group songs by these strings, so ``"Beyonce\u0301"`` (NFD) and
``"Beyonc\u00e9"``, or ``"AB\u200bBA"`` and ``"ABBA"``, must not become two artists.
Case is kept unless asked for (:func:`read_csv` ``casefold_labels=True``,
:meth:`Catalog.normalized`): ``"ABBA"`` and ``"Abba"`` may be two artists.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import CatalogError
from ..io import atomic_write_csv

COLUMNS: tuple[str, ...] = ("track_id", "path", "artist", "album", "title", "genre", "duration")
REQUIRED: tuple[str, ...] = ("track_id", "path")
#: The free-text columns songs are grouped and labelled by; see :func:`normalize_label`.
LABEL_COLUMNS: tuple[str, ...] = ("artist", "album", "title", "genre")

# Invisible characters that make two equal-looking labels differ: zero width
# space, non-joiner and joiner, word joiner, and the byte order mark.
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def normalize_label(text: str, *, casefold: bool = False) -> str:
    """One spelling of a label: NFC, no zero-width characters, single spaces.

    Parameters
    ----------
    text : an artist, album, title or genre
    casefold : also fold case (``"ABBA"`` -> ``"abba"``); off by default, since
        case can tell two artists apart

    Returns
    -------
    str
        ``text`` in Unicode NFC with U+200B..U+200D, U+2060 and U+FEFF removed,
        every run of whitespace (line breaks included) one space, and no
        leading or trailing space.
    """
    text = unicodedata.normalize("NFC", str(text).translate(_ZERO_WIDTH))
    text = " ".join(text.split())
    return text.casefold() if casefold else text


@dataclasses.dataclass(frozen=True)
class Track:
    """One song. ``duration`` is in seconds (``None`` when unknown)."""

    track_id: str
    path: str
    artist: str = ""
    album: str = ""
    title: str = ""
    genre: str = ""
    duration: float | None = None
    extra: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        # Every way a track is made (a CSV, a builder, a store's index) gives
        # one spelling per label; see normalize_label.
        for column in LABEL_COLUMNS:
            value = getattr(self, column)
            clean = normalize_label(value) if value else ""
            if clean != value:
                object.__setattr__(self, column, clean)

    def as_row(self) -> dict:
        row = {c: getattr(self, c) for c in COLUMNS}
        if self.duration is not None:
            row["duration"] = f"{self.duration:.3f}"
        row.update(self.extra)
        return row

    def get(self, column: str, default: str = "") -> str:
        """Any column by name, core or extra."""
        if column in COLUMNS:
            value = getattr(self, column)
            return default if value is None else value
        return self.extra.get(column, default)


def slugify(text: str, *, max_len: int = 60) -> str:
    """Lower-case, dash-separated form of ``text`` for ids and file names, in any script.

    Letters, digits and combining marks of every script are kept (Unicode NFC:
    ``"헤로즈/01 영웅"`` -> ``"헤로즈-01-영웅"``, ``"Ólafur Arnalds"`` ->
    ``"ólafur-arnalds"``); every run of anything else (spaces, punctuation,
    symbols, ``/``) becomes one dash. ASCII text gives the same slug as it always
    has, so ids of existing catalogs do not change. At most ``max_len``
    characters; ``"x"`` when nothing is left.
    """
    text = unicodedata.normalize("NFC", str(text))
    # categories L (letters), N (digits) and M (marks: a Devanagari vowel sign or
    # a Hangul jamo's combining part is part of its word, not a separator)
    kept = "".join(ch if unicodedata.category(ch)[0] in "LMN" else "-" for ch in text)
    text = re.sub(r"-+", "-", kept).strip("-").lower()
    return text[:max_len] or "x"


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: 2 per wide character (Hangul, kana, CJK), 0 per mark.

    East Asian wide and fullwidth characters (``unicodedata.east_asian_width``
    ``W``/``F``) take two columns, combining marks and zero-width characters
    none, everything else one; so ``"헤로즈"`` is 6 columns, ``"Beyonce\u0301"`` 7.
    """
    width = 0
    for ch in str(text):
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def fit_column(text: str, *, width: int, align: str = "<") -> str:
    """``text`` cut to at most ``width`` terminal columns, then padded to exactly ``width``.

    For tables printed to a terminal, where ``f"{text:<24}"`` counts characters
    and a Korean or Japanese name, two columns a character, pushes the rest
    of its row to the right.

    Parameters
    ----------
    text : a cell
    width : its column's width in terminal columns (see :func:`display_width`)
    align : ``"<"`` pads on the right, ``">"`` on the left
    """
    text = str(text)
    if display_width(text) > width:
        out, used = [], 0
        for ch in text:
            w = display_width(ch)
            if used + w > width:
                break
            out.append(ch)
            used += w
        text = "".join(out)
    pad = " " * (width - display_width(text))
    return text + pad if align == "<" else pad + text


class Catalog(Sequence[Track]):
    """An ordered, id-unique collection of :class:`Track`.

    Parameters
    ----------
    tracks : the rows; track ids must be unique
    source : where the rows came from, used in error messages
    """

    def __init__(self, tracks: Iterable[Track], *, source: str = "catalog"):
        self.tracks: list[Track] = list(tracks)
        self.source = source
        counts = Counter(t.track_id for t in self.tracks)
        dupes = [tid for tid, n in counts.items() if n > 1]
        if dupes:
            raise CatalogError(
                f"{source}: duplicate track_id {dupes[0]!r} ({len(dupes)} duplicated ids); "
                "track ids must be unique"
            )
        self._by_id = {t.track_id: i for i, t in enumerate(self.tracks)}

    def __getitem__(self, item):
        if isinstance(item, slice):
            return Catalog(self.tracks[item], source=self.source)
        return self.tracks[item]

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self) -> Iterator[Track]:
        return iter(self.tracks)

    def __contains__(self, track_id) -> bool:
        return track_id in self._by_id

    def by_id(self, track_id: str) -> Track:
        try:
            return self.tracks[self._by_id[track_id]]
        except KeyError:
            raise CatalogError(f"{self.source}: no track with id {track_id!r}") from None

    @property
    def track_ids(self) -> list[str]:
        return [t.track_id for t in self.tracks]

    @property
    def extra_columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for t in self.tracks:
            for k in t.extra:
                seen.setdefault(k, None)
        return list(seen)

    def filter(self, predicate) -> "Catalog":
        return Catalog([t for t in self.tracks if predicate(t)], source=self.source)

    def normalized(self, *, casefold: bool = False) -> "Catalog":
        """This catalog with its label columns passed through :func:`normalize_label`.

        Tracks are normalised when made, so this matters with ``casefold=True``:
        ``"ABBA"`` and ``"Abba"`` then become one artist.
        """
        return Catalog(
            [dataclasses.replace(t, **{c: normalize_label(getattr(t, c), casefold=casefold) for c in LABEL_COLUMNS})
             for t in self.tracks],
            source=self.source,
        )

    def summary(self) -> dict:
        """Counts per artist/album/genre and total hours."""
        hours = sum(t.duration or 0.0 for t in self.tracks) / 3600.0
        return {
            "tracks": len(self.tracks),
            "hours": round(hours, 3),
            "artists": dict(Counter(t.artist for t in self.tracks if t.artist).most_common()),
            "albums": dict(Counter(t.album for t in self.tracks if t.album).most_common()),
            "genres": dict(Counter(t.genre for t in self.tracks if t.genre).most_common()),
        }

    def write_csv(self, path: str | Path) -> Path:
        """Write the catalog as CSV, atomically. Paths are written as given."""
        path = Path(path)
        atomic_write_csv(path, rows=(t.as_row() for t in self.tracks), fieldnames=list(COLUMNS) + self.extra_columns)
        return path

    @classmethod
    def read_csv(cls, path: str | Path) -> "Catalog":
        return read_csv(path)


def _parse_duration(value: str, where: str) -> float | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        out = float(value)
    except ValueError:
        raise CatalogError(f"{where}: duration {value!r} is not a number of seconds") from None
    if not math.isfinite(out) or out < 0:
        raise CatalogError(f"{where}: duration {value!r} must be a finite, non-negative number of seconds; "
                           "fix the value or leave it empty")
    return out


def track_from_row(row: dict, *, base_dir: Path | None = None, where: str = "") -> Track:
    """Make a :class:`Track` from a CSV row; relative paths resolve against ``base_dir``."""
    tid = (row.get("track_id") or "").strip()
    path = (row.get("path") or "").strip()
    if not tid:
        raise CatalogError(f"{where}: empty track_id")
    if not path:
        raise CatalogError(f"{where}: track {tid!r} has an empty path")
    if base_dir is not None and not Path(path).is_absolute():
        path = str(base_dir / path)
    extra = {
        k: (v if v is not None else "")
        for k, v in row.items()
        if k is not None and k not in COLUMNS
    }
    return Track(
        track_id=tid,
        path=path,
        artist=(row.get("artist") or "").strip(),
        album=(row.get("album") or "").strip(),
        title=(row.get("title") or "").strip(),
        genre=(row.get("genre") or "").strip(),
        duration=_parse_duration(row.get("duration") or "", f"{where} (track {tid})"),
        extra=extra,
    )


def read_csv(path: str | Path, *, resolve_paths: bool = True, casefold_labels: bool = False) -> Catalog:
    """Read a catalog CSV.

    Needs the columns ``track_id`` and ``path``; ``artist``, ``album``, ``title``,
    ``genre`` and ``duration`` are optional, any other column is kept. When
    ``resolve_paths``, relative audio paths are resolved against the CSV's
    folder and made absolute, so the catalog stays right when written to
    another folder or used from another working folder. Labels are normalised
    (:func:`normalize_label`), and case-folded when ``casefold_labels``.

    Raises
    ------
    CatalogError
        If the file is missing or not UTF-8, a column is missing or repeated,
        or a row is malformed (extra fields, empty id or path, a duration that
        is not a finite number of seconds >= 0, a repeated track id).
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    try:
        # newline="": a \r inside a quoted value (a file name) stays a \r; the
        # default newline translation would turn it into \n.
        with open(path, encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    # not text.splitlines(): it also splits on U+2028, U+0085, \x1c.. inside quoted values
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    repeated = [c for c, n in Counter(header).items() if n > 1]
    if repeated:  # DictReader would keep the last one silently
        raise CatalogError(f"{path}: column {repeated[0]!r} appears {Counter(header)[repeated[0]]} times in the header; "
                           "keep one of them")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CatalogError(
            f"{path}: missing column(s) {', '.join(missing)}; a catalog needs "
            f"{', '.join(REQUIRED)} and may have {', '.join(COLUMNS[2:])}"
        )
    base_dir = Path(os.path.abspath(path.parent)) if resolve_paths else None
    tracks = []
    for lineno, row in enumerate(reader, start=2):
        if None in row:  # more fields than the header
            raise CatalogError(
                f"{path}:{lineno}: {len(header) + len(row[None])} fields but the header has "
                f"{len(header)}; quote values that contain commas"
            )
        tracks.append(track_from_row(row, base_dir=base_dir, where=f"{path}:{lineno}"))
    catalog = Catalog(tracks, source=str(path))
    return catalog.normalized(casefold=True) if casefold_labels else catalog
