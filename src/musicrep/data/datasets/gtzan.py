"""Catalog of GTZAN: ``genres/<genre>/<genre>.000NN.wav`` plus optional split lists.

The genre is the folder name. Artist and album are unknown for GTZAN and left
empty. The split lists are those of the fault-filtered split (Kereliuk, Sturm &
Larsen 2015): ``train_filtered.txt``, ``valid_filtered.txt``,
``test_filtered.txt``, one ``blues/blues.00029.wav`` per line; tracks in no list
keep an empty ``split`` (the filter left them out).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import soundfile as sf

from ...errors import CatalogError
from ..catalog import Catalog, Track
from ._common import SkipLog, Skipped, check_not_empty, found_file_problem

log = logging.getLogger(__name__)

GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
)
#: split name -> list file names tried in order
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train_filtered.txt", "train.txt"),
    "valid": ("valid_filtered.txt", "valid.txt", "validation.txt"),
    "test": ("test_filtered.txt", "test.txt"),
}
EXTENSIONS: tuple[str, ...] = (".wav", ".au")  # the original tarball has .au, most copies .wav
_NAME = re.compile(r"^([a-z]+)\.(\d{5})$")


def find_genres_dir(root: str | Path) -> Path:
    """The folder whose sub-folders are the genres: ``root/genres``, ``root/genres_original`` or ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise CatalogError(f"{root}: not a folder; give GTZAN's folder (the one holding genres/)")
    for name in ("genres", "genres_original", "Data/genres_original"):
        if (root / name).is_dir():
            return root / name
    if any((root / g).is_dir() for g in GENRES):
        return root
    raise CatalogError(
        f"{root}: no GTZAN genre folders found; expected genres/<genre>/<genre>.000NN.wav "
        f"with genres such as {', '.join(GENRES[:3])}"
    )


def read_split_lists(split_dir: str | Path) -> dict[str, str]:
    """``{"blues/blues.00029": "train", ...}`` from a folder of split lists.

    Raises
    ------
    CatalogError
        If the folder holds none of the lists, or one entry is in two lists.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise CatalogError(f"{split_dir}: split-list folder not found")
    out: dict[str, str] = {}
    found = []
    for split, names in SPLIT_FILES.items():
        path = next((split_dir / n for n in names if (split_dir / n).is_file()), None)
        if path is None:
            continue
        found.append(path.name)
        for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key = line.replace("\\", "/")
            key = key.rsplit(".", 1)[0] if Path(key).suffix.lower() in EXTENSIONS else key
            key = "/".join(key.split("/")[-2:])  # tolerate 'genres/blues/blues.00029.wav'
            if key in out and out[key] != split:
                raise CatalogError(f"{path}:{lineno}: {line!r} is also in the {out[key]} list")
            out[key] = split
    if not found:
        wanted = ", ".join(names[0] for names in SPLIT_FILES.values())
        raise CatalogError(f"{split_dir}: none of the split lists {wanted} found")
    log.info("%s: read %s (%d entries)", split_dir, ", ".join(found), len(out))
    return out


def from_gtzan(
    root: str | Path,
    *,
    split_dir: str | Path | None = None,
    with_duration: bool = True,
    skipped: list[Skipped] | None = None,
) -> Catalog:
    """Build a catalog of GTZAN.

    Parameters
    ----------
    root : GTZAN's folder (holding ``genres/``) or the ``genres`` folder itself
    split_dir : folder with ``train_filtered.txt``, ``valid_filtered.txt`` and
        ``test_filtered.txt`` (``train.txt`` etc. also accepted); adds a
        ``split`` column (train/valid/test, empty for unlisted tracks)
    with_duration : read each file's header for its duration (seconds); a file
        whose header cannot be read (GTZAN's copies often hold a broken
        ``jazz.00054.wav``) is then skipped
    skipped : if given, a list that receives one :class:`Skipped` per file left out

    Returns
    -------
    Catalog
        ``track_id`` = ``blues.00029``, genre = folder name, title = file stem,
        artist and album empty, sorted by genre then number.
    """
    genres_dir = find_genres_dir(root)
    splits = read_split_lists(split_dir) if split_dir is not None else None
    skips = SkipLog(skipped, logger=log)
    tracks: list[Track] = []
    for genre_dir in sorted(p for p in genres_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        tracks.extend(_genre_tracks(genre_dir, splits=splits, with_duration=with_duration, skips=skips))
    try:
        catalog = Catalog(tracks, source=str(genres_dir))
    except CatalogError as exc:
        raise CatalogError(f"{exc}; the same file name is in two genre folders") from None
    if splits is not None:
        _log_split_coverage(catalog, splits=splits, split_dir=split_dir)
    return check_not_empty(catalog, skipped=skips, where=str(genres_dir), what="no .wav/.au file in the genre folders")


def _genre_tracks(
    genre_dir: Path, *, splits: dict[str, str] | None, with_duration: bool, skips: SkipLog
) -> list[Track]:
    """The usable tracks of one genre folder, sorted by file name; the rest recorded in ``skips``."""
    genre = genre_dir.name
    tracks = []
    for path in sorted(genre_dir.iterdir()):
        if path.suffix.lower() not in EXTENSIONS or path.name.startswith("."):
            continue
        stem = path.stem
        if not _NAME.match(stem) or not stem.startswith(genre + "."):
            log.info("%s: name is not %s.000NN; kept with id %s", path, genre, stem)
        problem = found_file_problem(path)
        if problem is not None:
            reason, detail = problem
            skips.add(path, reason=reason, detail=detail)
            continue
        duration = None
        if with_duration:
            try:
                duration = _header_seconds(path)
            except Exception as exc:
                skips.add(path, reason="cannot read audio", detail=f"{type(exc).__name__}: {exc}")
                continue
        extra = {}
        if splits is not None:
            extra["split"] = splits.get(f"{genre}/{stem}", "")
        tracks.append(Track(track_id=stem, path=str(path.absolute()), title=stem, genre=genre,
                            duration=duration, extra=extra))
    return tracks


def _header_seconds(path: Path) -> float | None:
    """Duration in seconds from the file's header; raises what soundfile raises for a broken one."""
    info = sf.info(str(path))
    return info.frames / info.samplerate if info.samplerate else None


def _log_split_coverage(catalog: Catalog, *, splits: dict[str, str], split_dir: str | Path | None) -> None:
    """Say how many listed tracks have no file, and how many files are in no list."""
    have = {f"{t.genre}/{t.track_id}" for t in catalog}
    absent = sorted(k for k in splits if k not in have)
    if absent:
        log.warning("%s: %d listed tracks have no usable file, e.g. %s", split_dir, len(absent), absent[0])
    unlisted = sum(1 for t in catalog if not t.extra["split"])
    if unlisted:
        log.info("%d tracks are in no split list (left out by the filter); their split is empty", unlisted)
