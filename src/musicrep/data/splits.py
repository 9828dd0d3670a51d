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

Held-out songs are held out for every concept (:func:`make_splits`). The paper's
tables compare models on the same test songs; drawing the artist and album
splits independently would put one concept's valid/test songs into another
concept's training songs (on the built-in corpus 83% of the artist-test songs
were album-training songs). So the splits are drawn together, and **a song held
out (valid or test) by one concept is never a training song of another**: the
album split fills its training slots from artist-training songs (then songs the
artist split does not use) and its valid and test slots from the artist split's
held-out songs (the same part first, then unused songs); the track split adds
the songs without an artist, keeping the album split's part for those it holds.
An album that cannot be filled that way does not qualify. Single-concept and joint runs on the same catalog and seed
get exactly the same splits. Tracks with the same audio as another (found by the
store's content hash) are left out before drawing (:func:`drop_duplicates`), so no
recording is both trained on and held out.

All random draws come from ``np.random.default_rng(seed)`` over lists sorted
by name and track id, so the same catalog and seed give the same split.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..concepts import PAPER_CONCEPTS, concept_key
from ..errors import SplitError
from ..io import atomic_write_csv
from .catalog import Catalog, Track
from .split_draw import draw_rows, groups_by

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
COLUMNS: tuple[str, ...] = ("track_id", "concept_label", "split")
#: spellings of the three parts found in split files and dataset metadata
PART_ALIASES: dict[str, str] = {
    "train": "train", "training": "train", "tr": "train",
    "valid": "valid", "validation": "valid", "val": "valid", "dev": "valid",
    "test": "test", "testing": "test", "te": "test",
}


def normalize_part(value: str, *, where: str = "split") -> str:
    """Map ``training``/``validation``/``val``/... to ``train``/``valid``/``test``."""
    key = (value or "").strip().lower()
    if key not in PART_ALIASES:
        raise SplitError(f"{where}: unknown split part {value!r}; use train, valid or test")
    return PART_ALIASES[key]


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
        atomic_write_csv(path, rows=(dict(zip(COLUMNS, r)) for r in self.rows), fieldnames=COLUMNS)
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
    groups = groups_by(catalog, concept="artist")
    return Split(concept="artist", rows=draw_rows(
        groups=groups, n_groups=n_artists, songs_per_group=songs_per_artist, n_valid=n_valid, n_test=n_test,
        seed=seed, concept="artist", what="artist", total_candidates=len(groups),
    ))


def album_split(
    *,
    catalog: Sequence[Track],
    n_albums: int | None = None,
    songs_per_album: int = 10,
    n_valid: int = 1,
    n_test: int = 1,
    seed: int = 0,
    keep_parts: Split | None = None,
) -> Split:
    """The paper's album split (albums with >= ``songs_per_album`` songs, 8/1/1 by default).

    Parameters
    ----------
    catalog : the tracks to draw from
    n_albums : albums to use (the paper: twice the number of artists); None uses every qualifying album
    songs_per_album, n_valid, n_test, seed : as in :func:`artist_split`
    keep_parts : another concept's split (the artist split) whose songs keep their
        part here: its test songs fill only test slots, its valid songs valid
        slots, its training songs training slots (see the module docstring)
    """
    groups = groups_by(catalog, concept="album")
    prior = {tid: part for tid, _, part in keep_parts.rows} if keep_parts is not None else None
    # A different stream from the artist split's, so changing one does not move the other.
    return Split(concept="album", rows=draw_rows(
        groups=groups, n_groups=n_albums, songs_per_group=songs_per_album, n_valid=n_valid, n_test=n_test,
        seed=seed + 1_000_003, concept="album", what="album", total_candidates=len(groups), prior=prior,
    ))


def track_split(*, catalog: Sequence[Track], artist: Split, seed: int = 0, album: Split | None = None) -> Split:
    """The track concept's split: the artist split, plus the songs without an artist.

    The artist split's songs keep their part. A song whose artist is unknown
    cannot join the artist split but still has a track identity (DESIGN: such a
    track serves the album and track concepts), so those songs join too: the
    ones the album split holds keep their album part, the others are dealt to
    train/valid/test in the artist split's proportions. The label is the track id.

    Parameters
    ----------
    catalog : the tracks (as given to :func:`artist_split`)
    artist : the artist split
    seed : seed of ``np.random.default_rng``
    album : the album split, when there is one
    """
    rows = [(tid, tid, part) for tid, _, part in artist.rows]
    album_part = {tid: part for tid, _, part in album.rows} if album is not None else {}
    unknown = sorted(t.track_id for t in catalog if not (t.artist or "").strip())
    rows += [(tid, tid, album_part[tid]) for tid in unknown if tid in album_part]
    unknown = [tid for tid in unknown if tid not in album_part]
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


def column_split(
    *,
    catalog: Sequence[Track],
    column: str,
    n_values: int | None = None,
    songs_per_value: int = 10,
    n_valid: int = 1,
    n_test: int = 1,
    seed: int = 0,
    keep_parts: Mapping[str, str] | None = None,
) -> Split:
    """The split of a concept on any catalog column (``label``, ``composer``, ...): the album rule.

    Values with >= ``songs_per_value`` songs qualify; each gives that many songs,
    ``n_valid`` valid and ``n_test`` test, the rest training. ``keep_parts``
    (track id -> part, from the paper's concepts' splits) makes every song keep
    the part it already has, so that a song held out by one concept is never a
    training song of another.
    """
    groups = groups_by(catalog, concept=column)
    if not groups:
        raise SplitError(f"{column} split: no track has a {column!r} value; is it a column of the catalog?")
    return Split(concept=column, rows=draw_rows(
        groups=groups, n_groups=n_values, songs_per_group=songs_per_value, n_valid=n_valid, n_test=n_test,
        seed=seed + 3_000_017 + concept_key(column) % 1_000_003, concept=column, what="value",
        total_candidates=len(groups), prior=dict(keep_parts) if keep_parts else None,
    ))


def drop_duplicates(catalog: Sequence[Track], *, groups: Iterable[Sequence[str]]) -> tuple[Catalog, dict[str, str]]:
    """The catalog with one track per group of identical audio, and what was left out.

    The same recording under two track ids (a copy, a re-rip) would otherwise land
    in training and in a held-out set, or be its own positive pair; the first id of
    each group (in sort order) among those the catalog holds stays, so a subset of a
    store's catalog (:func:`game_subset`) keeps a track whose twins it lacks.

    Parameters
    ----------
    catalog : the tracks
    groups : track ids sharing one audio content (:func:`musicrep.data.store.duplicate_groups`)

    Returns
    -------
    kept : the catalog without the other members of each group
    dropped : left-out track id -> the id that stays
    """
    present = {t.track_id for t in catalog}
    held = [sorted(tid for tid in group if tid in present) for group in groups]
    dropped = {tid: group[0] for group in held for tid in group[1:]}
    kept = Catalog([t for t in catalog if t.track_id not in dropped], source=getattr(catalog, "source", "catalog"))
    return kept, dropped


def game_subset(catalog: Sequence[Track], *, n_games: int, column: str = "package", seed: int = 0) -> Catalog:
    """The songs of ``n_games`` values of ``column`` (the built-in corpus: games, one package each).

    The values are shuffled once with ``seed`` and the first ``n_games`` kept, so
    with one seed a smaller subset lies inside a larger one (a sweep over the
    number of games adds games, it does not swap them). Songs with an empty
    ``column`` are not a game and are left out. A stream of its own
    (``seed + 2_000_003``), so the splits drawn afterwards keep theirs.

    Raises SplitError when the catalog has fewer games than asked for.
    """
    games = sorted({str(t.get(column) or "") for t in catalog} - {""})
    if n_games > len(games):
        raise SplitError(f"n_games={n_games}: the catalog has {len(games)} values of {column!r}"
                         + ("" if games else f" (is {column!r} one of its columns?)"))
    order = np.random.default_rng(seed + 2_000_003).permutation(len(games))
    kept = {games[i] for i in order[:n_games]}
    tracks = [t for t in catalog if str(t.get(column) or "") in kept]
    log.info("training on %d of %d %s values (%d of %d songs)", n_games, len(games), column, len(tracks), len(catalog))
    return Catalog(tracks, source=getattr(catalog, "source", "catalog"))


def make_splits(
    *,
    catalog: Sequence[Track],
    concepts: Iterable[str] = PAPER_CONCEPTS,
    n_artists: int | None = None,
    songs_per_artist: int = 20,
    artist_valid: int = 2,
    artist_test: int = 2,
    n_albums: int | None = None,
    songs_per_album: int = 10,
    album_valid: int = 1,
    album_test: int = 1,
    seed: int = 0,
    n_values: int | None = None,
    songs_per_value: int = 10,
    value_valid: int = 1,
    value_test: int = 1,
) -> dict[str, Split]:
    """Every concept's split, drawn together so that held-out songs are held out everywhere.

    The artist split is drawn first, then the album split keeping the artist
    split's parts, then the track split (see the module docstring). Every split
    the catalog can give is made, whichever ``concepts`` a run trains, so that
    runs of different concepts on one catalog and seed share their held-out
    songs; a split that a concept in ``concepts`` needs and the catalog cannot
    give raises SplitError. A concept on another column (``label``, ...) gets
    its split last (:func:`column_split`), keeping every part the paper's
    splits gave, so drawing it changes none of theirs.

    Parameters
    ----------
    catalog : the tracks (e.g. ``FeatureStore.catalog``)
    concepts : the concepts that must get a split ("artist", "album", "track", or catalog columns)
    n_albums : None gives twice ``n_artists`` (the paper's rule), or every
        qualifying album when ``n_artists`` is None too
    n_values, songs_per_value, value_valid, value_test : the rule for column concepts
    the rest : as in :func:`artist_split` and :func:`album_split`

    Returns
    -------
    dict with keys among "artist", "album", "track" and the column concepts asked for
    """
    concepts = set(concepts)
    out: dict[str, Split] = {}
    _draw_into(out, "artist", artist_split, needed=bool(concepts & {"artist", "track"}),
               why="no artist split (%s); the album split is drawn alone",
               catalog=catalog, n_artists=n_artists, songs_per_artist=songs_per_artist,
               n_valid=artist_valid, n_test=artist_test, seed=seed)
    if n_albums is None and n_artists is not None:
        n_albums = 2 * n_artists
    _draw_into(out, "album", album_split, needed="album" in concepts, why="no album split (%s)",
               catalog=catalog, n_albums=n_albums, songs_per_album=songs_per_album,
               n_valid=album_valid, n_test=album_test, seed=seed, keep_parts=out.get("artist"))
    if "artist" in out:
        out["track"] = track_split(catalog=catalog, artist=out["artist"], seed=seed, album=out.get("album"))
    columns = sorted(c for c in concepts if c not in PAPER_CONCEPTS)
    out.update(_column_splits(catalog, columns=columns, held_by=out.values(), n_values=n_values,
                              songs_per_value=songs_per_value, n_valid=value_valid, n_test=value_test, seed=seed))
    return out


def _draw_into(out: dict[str, Split], concept: str, draw: Callable[..., Split], *, needed: bool, why: str,
               **kwargs) -> None:
    """``out[concept] = draw(**kwargs)``; when the catalog cannot give it and it is not ``needed``, log ``why``."""
    try:
        out[concept] = draw(**kwargs)
    except SplitError as exc:
        if needed:
            raise
        log.info(why, exc)


def _column_splits(catalog: Sequence[Track], *, columns: list[str], held_by: Iterable[Split], n_values: int | None,
                   songs_per_value: int, n_valid: int, n_test: int, seed: int) -> dict[str, Split]:
    """The splits of column concepts, drawn in ``columns`` order, each keeping every part drawn before it."""
    held = {tid: part for split in held_by for tid, _, part in split.rows}
    out: dict[str, Split] = {}
    for column in columns:
        out[column] = column_split(catalog=catalog, column=column, n_values=n_values, songs_per_value=songs_per_value,
                                   n_valid=n_valid, n_test=n_test, seed=seed, keep_parts=held)
        held.update({tid: part for tid, _, part in out[column].rows})
    return out


def held_out_overlap(splits: Mapping[str, Split]) -> dict[tuple[str, str], list[str]]:
    """Songs that one concept holds out (valid/test) and another trains on.

    Returns
    -------
    ``{(held_in, trained_in): sorted track ids}`` for every pair of concepts
    that overlap; empty when the splits are disjoint.
    """
    held = {c: {t for t, _, p in s.rows if p != "train"} for c, s in splits.items()}
    train = {c: {t for t, _, p in s.rows if p == "train"} for c, s in splits.items()}
    out: dict[tuple[str, str], list[str]] = {}
    for a in splits:
        for b in splits:
            both = held[a] & train[b]
            if both:
                out[(a, b)] = sorted(both)
    return out


def write_splits(splits: dict[str, Split], *, folder: str | Path) -> Path:
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


def check_in_catalog(split: Split, *, catalog: Catalog) -> None:
    """Raise SplitError when a split names a track the catalog (store) does not hold."""
    missing = [tid for tid, _, _ in split.rows if tid not in catalog]
    if missing:
        raise SplitError(
            f"{split.concept} split names {len(missing)} track(s) not in the store, e.g. {missing[0]!r}; "
            "the split was made for another store: start a new run folder"
        )
