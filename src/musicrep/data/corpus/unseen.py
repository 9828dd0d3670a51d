"""Unseen soundtracks: games held out of metadata training, as transfer targets of their own.

The issue this answers: the rendered folk targets say how a representation of game
music carries over to a different kind of music, but not whether it generalises to
real soundtracks it never trained on. :func:`split_off_games` takes whole games out of
the training catalog, so neither the artist nor the album nor the track concept
sees a second of them, and turns their tracks into two labelled collections:

- ``soundtracks``: label (``genre``) = the game. Each soundtrack has its own style,
  instruments and production. The catalog has no ``split`` column, so the transfer
  test draws a stratified split by track anew in every trial (within each game,
  some tracks train the probe and others test it).
- ``composers``: label = the composer, for composers of the held-out games with at
  least ``min_composer_songs`` songs there, written only when at least two such
  composers exist. A composer who also wrote for a game that stays in training is
  left out: that composer is not unseen.

The derived catalogs are written beside the corpus's own ``catalog.csv`` with its
relative paths, so the corpus folder stays relocatable.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

from ...errors import CorpusError
from ...io import atomic_write_json
from ..catalog import Catalog, Track, read_csv
from .games import PACKAGE_ALBUM

log = logging.getLogger(__name__)

TRAIN_FILE = "metadata-train.csv"
NOTES_FILE = "unseen.json"  # what was held out and which targets could be made, for the report
TARGET_FILES = {"soundtracks": "unseen-soundtracks.csv", "composers": "unseen-composers.csv"}


@dataclasses.dataclass(frozen=True)
class UnseenSplit:
    """What :func:`split_off_games` made: the training catalog and the targets (name -> tracks)."""

    train: list[Track]
    targets: dict[str, list[Track]]
    notes: list[str]


def game_of(track: Track) -> str:
    """The game a corpus track belongs to: its package's game name (the package when unnamed)."""
    package = track.get("package")
    return PACKAGE_ALBUM.get(package, package)


def split_off_games(catalog: Sequence[Track], *, packages: Sequence[str], min_composer_songs: int = 5) -> UnseenSplit:
    """Take the games of ``packages`` out of ``catalog``; label their tracks by game and by composer.

    Parameters
    ----------
    catalog : the games corpus (its ``package`` column names each track's package)
    packages : the Debian packages whose games are held out
    min_composer_songs : a composer of the held-out games is a class of the
        ``composers`` target with at least this many songs there

    Raises CorpusError when a package is not in the catalog or fewer than two games
    are held out (a target needs two classes).
    """
    present = {t.get("package") for t in catalog}
    missing = [p for p in packages if p not in present]
    if missing:
        raise CorpusError(f"unseen_games: {', '.join(missing)} not in the corpus (its packages: "
                          f"{', '.join(sorted(present))})")
    if len(set(packages)) < 2:
        raise CorpusError("unseen_games: hold out at least two games (a target needs two classes)")
    held = set(packages)
    train = [t for t in catalog if t.get("package") not in held]
    out = [t for t in catalog if t.get("package") in held]
    soundtracks = [dataclasses.replace(t, genre=game_of(t)) for t in out]
    train_artists = {t.artist for t in train if t.artist}
    counts = Counter(t.artist for t in out if t.artist and t.artist not in train_artists)
    kept = sorted(a for a, n in counts.items() if n >= min_composer_songs)
    notes = [f"{len(out)} tracks of {len(held)} games held out of metadata training: "
             + ", ".join(f"{g} {n}" for g, n in sorted(Counter(t.genre for t in soundtracks).items()))]
    targets = {"soundtracks": soundtracks}
    if len(kept) >= 2:
        targets["composers"] = [dataclasses.replace(t, genre=t.artist) for t in out if t.artist in kept]
        notes.append(f"unseen composers: {len(kept)} with >= {min_composer_songs} songs in the held-out games")
    else:
        shared = sorted({t.artist for t in out if t.artist and t.artist in train_artists})
        notes.append(
            f"no unseen-composer target: {len(kept)} composer(s) of the held-out games have >= {min_composer_songs} "
            f"songs there and none elsewhere (two are needed; songs per unseen composer: "
            f"{dict(counts.most_common()) or 'none'}; composers also in training: {shared or 'none'})")
    for line in notes:
        log.info("%s", line)
    return UnseenSplit(train=train, targets=targets, notes=notes)


def write_unseen(corpus_dir: Path, *, packages: Sequence[str], min_composer_songs: int = 5) -> dict[str, Path]:
    """Write the training catalog and the targets beside ``corpus_dir/catalog.csv``.

    Returns {"train": path, target name: path, ...}; a target file of an earlier
    call that this one does not make (too few composers now) is removed. The notes
    (what was held out, why there is no composer target) go to ``unseen.json``.
    """
    corpus_dir = Path(corpus_dir)
    catalog = read_csv(corpus_dir / "catalog.csv", resolve_paths=False)
    split = split_off_games(catalog, packages=packages, min_composer_songs=min_composer_songs)
    paths = {"train": Catalog(split.train, source="metadata training").write_csv(corpus_dir / TRAIN_FILE)}
    atomic_write_json(corpus_dir / NOTES_FILE, obj={"packages": list(packages), "notes": split.notes})
    for name, file in TARGET_FILES.items():
        if name in split.targets:
            paths[name] = Catalog(split.targets[name], source=f"unseen {name}").write_csv(corpus_dir / file)
        else:
            (corpus_dir / file).unlink(missing_ok=True)
    return paths
