"""musicrep's built-in real corpus, assembled from what the package registries ship.

Corpora (``musicrep corpus list``):

- ``games``: Debian game soundtracks (15 packages, ~640 MB of .debs): artist =
  composer, album = soundtrack; the metadata-training corpus.
- ``games-mini``: the 8 tracker-module packages (~34 MB, 80 tracks): tests and CI.
- ``games-full``: ``games`` plus the 49 packages of the games-full survey (64
  packages, ~1.56 GB of .debs; 618 tracks and ~33 h expected): more composers and
  games for the artist and album concepts.
- ``folk``: O'Neill's, Ryan's Mammoth and Aird's tunes from music21, rendered;
  label (``genre``) = tune type, ``split`` by tune; the transfer corpus.
- ``folk-mini``: the same with at most 40 tunes per type (280 tunes, ~1.5 min).
- ``essen``: Essen Folksong Collection songs from music21, rendered like the folk
  tunes; label (``genre``) = region (China, Luxembourg, Lorraine, Germany), 400
  per region (1,600 tunes, ~3 min on 2 workers), ``split`` by tune; a second
  transfer target.
- ``essen-mini``: the same with 30 tunes per region (120 tunes, ~20 s).
- ``classical``: music21 scores rendered: artist = composer, album = mass /
  madrigal book / quartet, track = section / movement (1,814 pieces; slow, music21
  parses a score in ~1-4 s).
- ``classical-mini``: at most 8 works per composer and 6 pieces per work.

Layout of ``OUT``: ``catalog.csv`` (paths relative to ``OUT``), ``summary.json``,
``summary.md``, ``audio/``, ``.cache/`` (downloaded and unpacked packages) and
``DONE`` (the build settings, written last). A rerun with the same settings returns
at once; an interrupted one resumes, skipping finished downloads and audio files.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import CorpusError
from ...io import atomic_write_json
from ..catalog import Catalog, Track
from . import classical, essen, folk, games
from .summary import summarize, write_summary

log = logging.getLogger(__name__)

__all__ = ["CORPORA", "CorpusFigures", "CorpusSpec", "build_corpus", "list_corpora", "write_corpus"]


@dataclass(frozen=True)
class CorpusFigures:
    """Measured size of a corpus, as shown by ``musicrep corpus list``.

    ``composers`` counts the distinct non-empty ``artist`` values (composers for the
    games and classical corpora, the tune collections for folk and essen);
    ``download_mb`` is the .deb download (``None``: nothing is downloaded);
    ``measured`` says where the figures were read.
    """

    tracks: int
    hours: float
    composers: int
    albums: int
    download_mb: float | None
    measured: str


@dataclass(frozen=True)
class CorpusSpec:
    """A named corpus: its kind (``games`` or ``folk``), description, settings and
    measured figures (``None``: not measured)."""

    kind: str
    description: str
    options: dict = field(default_factory=dict)
    figures: CorpusFigures | None = None


CORPORA: dict[str, CorpusSpec] = {
    "games": CorpusSpec("games", "Debian game soundtracks, artist = composer (15 packages, ~640 MB download)",
                        {"packages": games.FULL_PACKAGES},
                        CorpusFigures(265, 17.784, 34, 21, 639.5,
                                      "the main job's build of 2026-11-26, before games-full became its corpus "
                                      "(summary.json; the same on 2026-11-25)")),
    "games-mini": CorpusSpec("games-mini", "8 tracker-module soundtrack packages (~34 MB, ~80 tracks)",
                             {"packages": games.MINI_PACKAGES},
                             CorpusFigures(80, 2.765, 11, 8, 31.8,
                                           "the quick main job's build of 2026-11-25 (summary.json)")),
    "games-full": CorpusSpec("games-full", "games + 49 Debian game packages of the games-full survey "
                                           "(64 packages, ~1.56 GB download)",
                             {"packages": games.GAMES_FULL_PACKAGES},
                             CorpusFigures(618, 32.923, 103, 77, 1559.0,
                                           "the main job's build of 2026-11-26 (summary.json; 27 composers with "
                                           ">= 5 tracks, 12 with >= 10)")),
    "folk": CorpusSpec("folk", "O'Neill's/Ryan's/Aird's folk tunes rendered, label = tune type, split by tune",
                       {"max_per_class": None},
                       CorpusFigures(2147, 26.546, 3, 8, None,
                                     "the main job's build of 2026-11-26 (summary.json)")),
    "folk-mini": CorpusSpec("folk-mini", "the folk corpus with at most 40 tunes per type",
                            {"max_per_class": 40},
                            CorpusFigures(280, 3.468, 3, 8, None,
                                          "the quick main job's build of 2026-11-25 (summary.json)")),
    "essen": CorpusSpec("essen", "Essen Folksong Collection songs rendered, label = region (4 x 400), split by tune",
                        {"max_per_class": 400},
                        CorpusFigures(1596, 10.322, 11, 24, None,
                                      "the main job's build of 2026-11-26 (summary.json)")),
    "essen-mini": CorpusSpec("essen-mini", "the essen corpus with 30 tunes per region",
                             {"max_per_class": 30},
                             CorpusFigures(120, 0.799, 11, 16, None,
                                           "the quick main job's build of 2026-11-26 (summary.json)")),
    "classical": CorpusSpec("classical", "music21 scores rendered: composer -> work -> movement (slow)",
                            {"max_per_album": None, "max_albums": None}),
    "classical-mini": CorpusSpec("classical-mini", "classical with <= 8 works per composer, <= 6 pieces per work",
                                 {"max_per_album": 6, "max_albums": 8}),
}


def list_corpora(*, figures: bool = False) -> dict:
    """Corpus name -> one-line description; with ``figures``, name -> a row of
    ``description``, ``tracks``, ``hours``, ``composers``, ``albums``, ``download_mb``
    and ``measured`` (``None`` where the corpus was not measured)."""
    if not figures:
        return {name: spec.description for name, spec in CORPORA.items()}
    rows = {}
    for name, spec in CORPORA.items():
        fig = spec.figures
        rows[name] = {"description": spec.description,
                      **{k: getattr(fig, k) if fig else None
                         for k in ("tracks", "hours", "composers", "albums", "download_mb")},
                      "measured": fig.measured if fig else "not measured"}
    return rows


def write_corpus(tracks: list[Track], *, out_dir: Path, name: str, skipped: list[dict], info: dict) -> Path:
    """Write ``catalog.csv``, ``summary.json`` and ``summary.md``; return the catalog path."""
    out_dir = Path(out_dir)
    catalog = Catalog(tracks, source=f"corpus {name}")
    path = catalog.write_csv(out_dir / "catalog.csv")
    write_summary(summarize(catalog, skipped=skipped, info=info), out_dir=out_dir, name=name)
    return path


def build_corpus(
    name: str,
    *,
    out_dir: Path,
    workers: int = 2,
    force: bool = False,
    cache_dir: Path | None = None,
    seed: int = 0,
    max_per_class: int | None = None,
) -> Path:
    """Build corpus ``name`` into ``out_dir`` and return the path of its ``catalog.csv``.

    Parameters
    ----------
    name : one of :data:`CORPORA`
    out_dir : the corpus folder (created)
    workers : parallel decoders / renderers
    force : rebuild the audio and catalog even if ``DONE`` says they are finished
        (downloaded packages are kept)
    cache_dir : where downloaded ``.deb`` files are kept (default ``out_dir/.cache/debs``);
        share one between corpora to download once
    seed : folk corpus: instrument, tempo, subsampling and split
    max_per_class : folk and essen corpora: overrides the corpus's size knob
    """
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    spec = CORPORA[name]
    out_dir = Path(out_dir)
    settings = _settings(name, spec=spec, seed=seed, max_per_class=max_per_class)
    done = out_dir / "DONE"
    if not force and _is_complete(out_dir, settings=settings):
        log.info("corpus %s in %s is complete; pass force=True to rebuild", name, out_dir)
        return out_dir / "catalog.csv"
    done.unlink(missing_ok=True)
    if force:
        shutil.rmtree(out_dir / "audio", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tracks, skipped, info = _build_tracks(spec, out_dir=out_dir, settings=settings, cache_dir=cache_dir, seed=seed,
                                          workers=workers)
    if not tracks:
        raise CorpusError(f"corpus {name}: no usable track was produced; see the warnings above")
    info = {**info, "wall_s": round(time.perf_counter() - start, 1), "workers": workers}
    path = write_corpus(tracks, out_dir=out_dir, name=name, skipped=skipped, info=info)
    atomic_write_json(done, obj={"settings": settings, "tracks": len(tracks)})
    log.info("corpus %s: %d tracks in %s (%.0f s)", name, len(tracks), path, info["wall_s"])
    return path


def _settings(name: str, *, spec: CorpusSpec, seed: int, max_per_class: int | None) -> dict:
    """What a build depends on, as written to ``DONE`` (tuples as lists, so it compares equal to the JSON)."""
    settings = {"name": name, "seed": seed, **{k: list(v) if isinstance(v, tuple) else v
                                              for k, v in spec.options.items()}}
    if spec.kind.startswith(("folk", "essen")) and max_per_class is not None:
        settings["max_per_class"] = max_per_class
    return settings


def _is_complete(out_dir: Path, *, settings: dict) -> bool:
    """True when ``DONE`` and ``catalog.csv`` are there and ``DONE`` records the same settings."""
    done = out_dir / "DONE"
    if not (done.is_file() and (out_dir / "catalog.csv").is_file()):
        return False
    try:
        return json.loads(done.read_text()).get("settings") == settings
    except ValueError:
        return False


def _build_tracks(
    spec: CorpusSpec, *, out_dir: Path, settings: dict, cache_dir: Path | None, seed: int, workers: int
) -> tuple[list[Track], list[dict], dict]:
    """Run the corpus kind's own builder: (tracks, skipped, info)."""
    if spec.kind.startswith("games"):
        return games.build(spec.options["packages"], out_dir=out_dir, cache_dir=cache_dir, workers=workers)
    if spec.kind.startswith("classical"):
        return classical.build(out_dir=out_dir, max_per_album=spec.options["max_per_album"],
                               max_albums=spec.options["max_albums"], seed=seed, workers=workers)
    if spec.kind.startswith("essen"):
        return essen.build(out_dir=out_dir, max_per_class=settings["max_per_class"], seed=seed, workers=workers)
    return folk.build(out_dir=out_dir, max_per_class=settings["max_per_class"], seed=seed, workers=workers)
