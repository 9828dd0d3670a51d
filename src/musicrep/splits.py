"""The paper's artist and album splits, seeded and written beside the run.

Lee, Park & Nam (2019) train on a fixed number of artists with 20 songs each,
split 16/2/2 songs into train/valid/test, and on twice as many albums with 10
songs each, split 8/1/1. The track concept uses the artist split. Here every
count is a setting so that smaller collections can be used; the defaults are
the paper's.

A split is a table ``track_id, concept_label, split`` (split in ``train``,
``valid``, ``test``); on disk it is ``RUN/split/<concept>.csv``.

* Artist split: a track qualifies when its artist is not empty; an artist
  qualifies with at least ``songs_per_artist`` qualifying songs. ``n_artists``
  of them are drawn at random, and for each exactly ``songs_per_artist`` songs,
  the first ``n_train`` of which train, then ``n_valid`` valid, then ``n_test``.
* Track split: the artist split, plus the songs without an artist dealt in
  the same proportions (:func:`track_split`); the label is the song.
* Album split: the same with albums (a track with an empty album does not
  qualify; an empty artist does not matter). Albums are keyed by their album
  name as the catalog gives it, so catalog builders should make album names
  unique (e.g. MSD release ids).

All random draws come from ``np.random.default_rng(seed)`` over lists sorted
by name and track id, so the same catalog and seed give the same split.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .catalog import Catalog, Track
from .errors import SplitError
from .io import atomic_write_csv

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
COLUMNS: tuple[str, ...] = ("track_id", "concept_label", "split")


@dataclasses.dataclass(frozen=True)
class Split:
    """One concept's split.

    Attributes
    ----------
    concept : "artist" or "album" (the track concept reuses the artist split)
    rows : tuples (track_id, concept_label, split), in a stable order
    """

    concept: str
    rows: tuple[tuple[str, str, str], ...]

    def __post_init__(self) -> None:
        bad = [r for r in self.rows if r[2] not in SPLITS]
        if bad:
            raise SplitError(f"{self.concept} split: unknown split name {bad[0][2]!r}; use one of {list(SPLITS)}")

    def track_ids(self, split: str) -> list[str]:
        """Track ids in ``split`` ("train", "valid" or "test")."""
        if split not in SPLITS:
            raise SplitError(f"unknown split {split!r}; use one of {list(SPLITS)}")
        return [tid for tid, _, s in self.rows if s == split]

    def labels(self) -> dict[str, str]:
        """track_id -> concept label (artist or album name)."""
        return {tid: label for tid, label, _ in self.rows}

    @property
    def n_labels(self) -> int:
        return len({label for _, label, _ in self.rows})

    def write_csv(self, path: str | Path) -> Path:
        """Write ``track_id, concept_label, split`` atomically."""
        path = Path(path)
        atomic_write_csv(path, (dict(zip(COLUMNS, r)) for r in self.rows), COLUMNS)
        return path

    @classmethod
    def read_csv(cls, path: str | Path, *, concept: str | None = None) -> "Split":
        """Reload a split written by :meth:`write_csv`; concept defaults to the file stem."""
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = set(COLUMNS) - set(reader.fieldnames or ())
                if missing:
                    raise SplitError(f"{path}: missing column(s) {sorted(missing)}; expected {list(COLUMNS)}")
                rows = tuple((r["track_id"], r["concept_label"], r["split"]) for r in reader)
        except FileNotFoundError:
            raise SplitError(f"{path}: split file not found") from None
        return cls(concept=concept or path.stem, rows=rows)


def _draw(
    *,
    groups: dict[str, list[str]],
    n_groups: int | None,
    songs_per_group: int,
    n_valid: int,
    n_test: int,
    seed: int,
    concept: str,
    what: str,
    total_candidates: int,
) -> Split:
    n_train = songs_per_group - n_valid - n_test
    if n_train < 1 or n_valid < 1 or n_test < 1:
        raise SplitError(
            f"{concept} split: {songs_per_group} songs per {what} cannot give {n_valid} valid and "
            f"{n_test} test songs and at least one training song; raise songs_per_{what} or lower the others"
        )
    qualifying = sorted(name for name, ids in groups.items() if len(ids) >= songs_per_group)
    wanted = len(qualifying) if n_groups is None else n_groups
    if wanted < 2 or len(qualifying) < wanted:
        raise SplitError(
            f"{concept} split needs {max(wanted, 2)} {what}s with >= {songs_per_group} songs each, but only "
            f"{len(qualifying)} of {total_candidates} {what}s in the collection qualify; lower n_{what}s "
            f"or songs_per_{what}, or add music"
        )
    rng = np.random.default_rng(seed)
    chosen = [qualifying[i] for i in rng.permutation(len(qualifying))[:wanted]]
    rows: list[tuple[str, str, str]] = []
    for name in sorted(chosen):
        ids = sorted(groups[name])
        picked = [ids[i] for i in rng.permutation(len(ids))[:songs_per_group]]
        names = ["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test
        rows.extend((tid, name, s) for tid, s in zip(picked, names))
    log.info("%s split: %d %ss x %d songs (%d/%d/%d)", concept, wanted, what, songs_per_group, n_train, n_valid, n_test)
    return Split(concept=concept, rows=tuple(rows))


def _groups(tracks: Iterable[Track], attr: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for t in tracks:
        key = (getattr(t, attr) or "").strip()
        if key:
            out[key].append(t.track_id)
    return dict(out)


def artist_split(
    *,
    catalog: Sequence[Track],
    n_artists: int | None = None,
    songs_per_artist: int = 20,
    n_valid: int = 2,
    n_test: int = 2,
    seed: int = 0,
) -> Split:
    """The paper's artist split.

    Parameters
    ----------
    catalog : the tracks to draw from (e.g. ``FeatureStore.catalog``)
    n_artists : artists to use; None uses every qualifying artist
    songs_per_artist : songs used per artist (the paper: 20); artists with fewer do not qualify
    n_valid, n_test : songs per artist for validation and test (the paper: 2 and 2)
    seed : seed of ``np.random.default_rng``

    Raises
    ------
    SplitError
        when fewer artists qualify than requested, saying how many do.
    """
    groups = _groups(catalog, "artist")
    return _draw(
        groups=groups, n_groups=n_artists, songs_per_group=songs_per_artist, n_valid=n_valid, n_test=n_test,
        seed=seed, concept="artist", what="artist", total_candidates=len(groups),
    )


def album_split(
    *,
    catalog: Sequence[Track],
    n_albums: int | None = None,
    songs_per_album: int = 10,
    n_valid: int = 1,
    n_test: int = 1,
    seed: int = 0,
) -> Split:
    """The paper's album split (albums with >= ``songs_per_album`` songs, 8/1/1 by default).

    Parameters
    ----------
    catalog : the tracks to draw from
    n_albums : albums to use (the paper: twice the number of artists); None uses every qualifying album
    songs_per_album, n_valid, n_test, seed : as in :func:`artist_split`
    """
    groups = _groups(catalog, "album")
    # A different stream from the artist split's, so changing one does not move the other.
    return _draw(
        groups=groups, n_groups=n_albums, songs_per_group=songs_per_album, n_valid=n_valid, n_test=n_test,
        seed=seed + 1_000_003, concept="album", what="album", total_candidates=len(groups),
    )


def track_split(*, catalog: Sequence[Track], artist: Split, seed: int = 0) -> Split:
    """The track concept's split: the artist split, plus the songs without an artist.

    The artist split's songs keep their part. A song whose artist is unknown
    cannot join the artist split but still has a track identity (DESIGN: such a
    track serves the album and track concepts), so those songs are dealt to
    train/valid/test in the artist split's proportions. The label is the track id.

    Parameters
    ----------
    catalog : the tracks (as given to :func:`artist_split`)
    artist : the artist split
    seed : seed of ``np.random.default_rng``
    """
    rows = [(tid, tid, part) for tid, _, part in artist.rows]
    unknown = sorted(t.track_id for t in catalog if not (t.artist or "").strip())
    if unknown:
        parts = [part for _, _, part in artist.rows]
        n = len(unknown)
        n_valid = int(round(n * parts.count("valid") / len(parts)))
        n_test = int(round(n * parts.count("test") / len(parts)))
        names = ["valid"] * n_valid + ["test"] * n_test
        names += ["train"] * (n - len(names))
        order = np.random.default_rng(seed + 2_000_003).permutation(n)
        rows += [(unknown[i], unknown[i], names[k]) for k, i in enumerate(order)]
        log.info("track split: the artist split plus %d song(s) without an artist", n)
    return Split(concept="track", rows=tuple(rows))


def write_splits(splits: dict[str, Split], folder: str | Path) -> Path:
    """Write each split to ``folder/<concept>.csv``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for concept, split in splits.items():
        split.write_csv(folder / f"{concept}.csv")
    return folder


def load_splits(folder: str | Path) -> dict[str, Split]:
    """Read every ``<concept>.csv`` under ``folder`` (as written by :func:`write_splits`)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise SplitError(f"{folder}: no split CSV files found")
    return {f.stem: Split.read_csv(f) for f in files}


def check_in_catalog(split: Split, catalog: Catalog) -> None:
    """Raise SplitError when a split names a track the catalog (store) does not hold."""
    missing = [tid for tid, _, _ in split.rows if tid not in catalog]
    if missing:
        raise SplitError(
            f"{split.concept} split names {len(missing)} track(s) not in the store, e.g. {missing[0]!r}; "
            "the split was made for another store: start a new run folder"
        )
