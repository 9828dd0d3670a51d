"""The concepts a model learns from: the paper's three, and any other catalog column.

A *concept* names what makes two songs a positive pair. The paper's are
``artist`` and ``album`` (two songs with the same label) and ``track`` (two
windows of one song). Beyond the paper any catalog column works the same way
as artist and album: ``label`` (record label), ``composer``, ``year``, ...; two
songs with the same non-empty value are a positive pair (:func:`concept_label`).

Margins: the paper's grid search gave artist 0.4, album 0.25 and track 0.1
(:data:`PAPER_MARGINS`); a column concept gets :data:`COLUMN_MARGIN` (album's
value, as the closest kind of grouping) unless a run says otherwise.
"""

from __future__ import annotations

import re
import zlib

from .errors import ConfigError

#: the paper's concepts, in its order
PAPER_CONCEPTS: tuple[str, ...] = ("artist", "album", "track")
#: the paper's margins (Lee et al. 2019, after a grid search)
PAPER_MARGINS: dict[str, float] = {"artist": 0.4, "album": 0.25, "track": 0.1}
#: the margin of a concept on any other column, unless a run sets one
COLUMN_MARGIN = 0.25
#: a model trained on several concepts at once
JOINT = "joint"
# a column name usable as a concept, a folder name and a CSV column alike
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
# columns that identify or describe a file, not a grouping of songs
_NOT_CONCEPTS = frozenset({"track_id", "path", "title", "duration", "split", JOINT})


def check_concept(name: str) -> str:
    """``name`` if it can be a concept, else a :class:`ConfigError` saying why."""
    if name in PAPER_CONCEPTS:
        return name
    if not _NAME.match(name or "") or name in _NOT_CONCEPTS:
        raise ConfigError(f"concept {name!r}: use artist, album, track or the name of a catalog column that groups "
                          f"songs (letters, digits, _ and -; not one of {sorted(_NOT_CONCEPTS)})")
    return name


def concept_key(name: str) -> int:
    """A stable integer per concept for seeding random streams: 0, 1, 2 for the
    paper's (as before any other existed), a CRC-32 of the name above 2 for the rest."""
    if name in PAPER_CONCEPTS:
        return PAPER_CONCEPTS.index(name)
    return 3 + zlib.crc32(name.encode("utf-8"))


def ordered(names) -> list[str]:
    """The paper's concepts first in the paper's order, then the others sorted."""
    names = set(names)
    return [c for c in PAPER_CONCEPTS if c in names] + sorted(names - set(PAPER_CONCEPTS))


def concept_label(track, *, concept: str) -> str:
    """The label a track carries for ``concept`` ("" when unknown).

    The track concept's label is the track id itself; an album is named by its
    album title alone (a game soundtrack with several composers is one album);
    any other concept reads the catalog column of that name.
    """
    if concept == "track":
        return track.track_id
    if concept in ("artist", "album"):
        return (getattr(track, concept) or "").strip()
    return str(track.get(concept, "") or "").strip()
