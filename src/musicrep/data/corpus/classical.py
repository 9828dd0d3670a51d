"""A symbolic classical corpus: composer -> work -> movement, rendered to audio.

From the music21 corpus: Palestrina's masses (album = mass, track = section),
Monteverdi's madrigal books (album = book), Bach's four-part chorales (one album)
and the string quartets stored one movement per file (Beethoven, Haydn, Mozart;
album = quartet). Scores go music21 -> MIDI -> FluidSynth with a seeded random
melodic instrument and tempo jitter per piece (:mod:`musicrep.data.corpus.render`, as for the folk tunes),
so the instrument music21 gives each source (voices, piano, strings) cannot stand
in for the composer. music21 parses slowly (~1 s a score): use ``max_per_album``
and ``max_albums`` to keep a build short.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import progress
from ...errors import CorpusError
from ..catalog import Track, slugify
from . import tools
from .render import render_choice, render_pool, render_to_flac, rendered_skip

log = logging.getLogger(__name__)

LICENSE = "public domain score; encoding from the music21 corpus (see music21 corpus/license.txt)"
QUARTETS: dict[str, tuple[str, str]] = {
    "beethoven/opus18no1": ("Ludwig van Beethoven", "String Quartet Op. 18 No. 1"),
    "beethoven/opus59no1": ("Ludwig van Beethoven", "String Quartet Op. 59 No. 1"),
    "beethoven/opus59no2": ("Ludwig van Beethoven", "String Quartet Op. 59 No. 2"),
    "beethoven/opus59no3": ("Ludwig van Beethoven", "String Quartet Op. 59 No. 3"),
    "haydn/opus1no1": ("Joseph Haydn", "String Quartet Op. 1 No. 1"),
    "haydn/opus74no1": ("Joseph Haydn", "String Quartet Op. 74 No. 1"),
    "mozart/k155": ("Wolfgang Amadeus Mozart", "String Quartet K. 155"),
    "mozart/k156": ("Wolfgang Amadeus Mozart", "String Quartet K. 156"),
    "mozart/k458": ("Wolfgang Amadeus Mozart", "String Quartet K. 458"),
    "mozart/k80": ("Wolfgang Amadeus Mozart", "String Quartet K. 80"),
}


@dataclass(frozen=True)
class Piece:
    piece_id: str
    composer: str
    work: str  # the album
    title: str
    path: Path


def _humdrum_field(path: Path, key: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for _, line in zip(range(40), fh):
            if line.startswith(f"!!!{key}:"):
                return line.split(":", 1)[1].strip()
    return ""


def find_pieces(*, corpus_dir: Path | None = None) -> list[Piece]:
    """Every piece of the sources above, in a fixed order."""
    if corpus_dir is None:
        try:
            import music21  # deferred: optional (musicrep[corpus]) and slow to import; only its folder is needed
        except ImportError:
            raise CorpusError("the classical corpus needs music21: pip install 'musicrep[corpus]'") from None
        corpus_dir = Path(music21.__file__).parent / "corpus"
    corpus_dir = Path(corpus_dir)
    pieces: list[Piece] = []
    for path in sorted((corpus_dir / "palestrina").glob("*.krn")):
        mass = _humdrum_field(path, "OPR")
        if mass:
            title = f"{_humdrum_field(path, 'OTL') or path.stem} ({path.stem})"
            pieces.append(Piece(f"palestrina-{slugify(path.stem, max_len=40)}", "Giovanni Pierluigi da Palestrina",
                                mass, title, path))
    for path in sorted((corpus_dir / "monteverdi").glob("madrigal.*.mxl")):
        m = re.fullmatch(r"madrigal\.(\d+)\.(\d+)", path.stem)
        if m:
            pieces.append(Piece(f"monteverdi-{m.group(1)}-{m.group(2)}", "Claudio Monteverdi",
                                f"Madrigals, Book {m.group(1)}", f"Madrigal {m.group(1)}.{m.group(2)}", path))
    for path in sorted((corpus_dir / "bach").glob("bwv*.mxl")):
        pieces.append(Piece(f"bach-{slugify(path.stem, max_len=30)}", "Johann Sebastian Bach", "Four-part chorales",
                            path.stem.upper().replace("BWV", "BWV "), path))
    for folder, (composer, work) in QUARTETS.items():
        for path in sorted((corpus_dir / folder).glob("movement*.mxl")):
            pieces.append(Piece(f"{slugify(folder, max_len=30)}-{path.stem}", composer, work,
                                f"{work}, {path.stem.replace('movement', 'movement ')}", path))
    return pieces


def select(pieces: list[Piece], *, max_per_album: int | None, max_albums: int | None, seed: int) -> list[Piece]:
    """At most ``max_albums`` works per composer and ``max_per_album`` pieces per work (seeded)."""
    rng = np.random.default_rng(seed)
    by_composer: dict[str, dict[str, list[Piece]]] = {}
    for p in pieces:
        by_composer.setdefault(p.composer, {}).setdefault(p.work, []).append(p)
    out = []
    for composer in sorted(by_composer):
        works = sorted(by_composer[composer])
        if max_albums and len(works) > max_albums:
            works = sorted(works[i] for i in rng.permutation(len(works))[:max_albums])
        for work in works:
            members = by_composer[composer][work]
            if max_per_album and len(members) > max_per_album:
                members = [members[i] for i in sorted(rng.permutation(len(members))[:max_per_album])]
            out.extend(members)
    return out


def _strip_repeats(score) -> bool:
    """Remove repeat barlines and repeat expressions in place; True if any were removed."""
    import music21  # deferred: optional (musicrep[corpus]) and slow to import; only rendering scores needs it

    removed = False
    for measure in score.recurse().getElementsByClass(music21.stream.Measure):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(measure, side), music21.bar.Repeat):
                setattr(measure, side, None)
                removed = True
    for expr in list(score.recurse().getElementsByClass(music21.repeat.RepeatExpression)):
        expr.activeSite.remove(expr)
        removed = True
    return removed


def render_one(job: tuple) -> tuple[str, float | None, str]:
    """Worker entry: parse with music21, write MIDI, synthesize. Skips finished files."""
    piece_id, path, dest, program, tempo = job
    return render_to_flac(piece_id, dest=Path(dest), write_midi=functools.partial(_score_to_midi, path),
                          program=program, tempo=tempo)


def _score_to_midi(path: str, midi: Path) -> None:
    """Parse the score at ``path`` with music21 and write it as the MIDI file ``midi``."""
    import music21  # deferred: optional (musicrep[corpus]) and slow to import; only rendering scores needs it

    score = music21.converter.parse(str(path))
    try:
        score.write("midi", fp=str(midi))
    except Exception as exc:  # music21 cannot expand some scores' repeat marks
        if "repeat" not in str(exc).lower() or not _strip_repeats(score):
            raise
        log.debug("%s: %s; rendering the written notes once through", path, exc)
        score.write("midi", fp=str(midi))


def build(
    *,
    out_dir: Path,
    pieces: list[Piece] | None = None,
    max_per_album: int | None = None,
    max_albums: int | None = None,
    min_seconds: float = 10.0,
    tempo_jitter: float = 0.1,
    seed: int = 0,
    workers: int = 2,
    soundfont: str | Path | None = None,
) -> tuple[list[Track], list[dict], dict]:
    """Render the classical corpus into ``out_dir/audio``; return (tracks, skipped, info)."""
    tools.require_fluidsynth()
    tools.require_pretty_midi()
    sf2 = tools.find_soundfont(soundfont)
    out_dir = Path(out_dir)
    all_pieces = find_pieces() if pieces is None else pieces
    chosen = select(all_pieces, max_per_album=max_per_album, max_albums=max_albums, seed=seed)
    jobs, meta = [], {}
    for p in chosen:
        program, tempo = render_choice(p.piece_id, seed=seed, tempo_jitter=tempo_jitter)
        dest = out_dir / "audio" / slugify(p.composer, max_len=30) / f"{p.piece_id}.flac"
        jobs.append((p.piece_id, str(p.path), str(dest), program, tempo))
        meta[p.piece_id] = (p, program, tempo, dest)
    skipped: list[dict] = []
    if len(chosen) < len(all_pieces):
        skipped.append({"source": "over max_per_album / max_albums", "reason": "",
                        "count": len(all_pieces) - len(chosen)})
    tracks = []
    with render_pool(render_one, jobs=jobs, soundfont=sf2, workers=workers, chunksize=2) as results:
        for piece_id, duration, error in progress.bar(results, total=len(jobs), desc="scores", unit="piece"):
            p, program, tempo, dest = meta[piece_id]
            source = f"music21:{p.path.parent.name}/{p.path.name}"
            skip = rendered_skip(source, duration=duration, error=error, min_seconds=min_seconds)
            if skip is not None:
                skipped.append(skip)
            else:
                tracks.append(Track(
                    track_id=piece_id, path=dest.relative_to(out_dir).as_posix(), artist=p.composer,
                    album=p.work, title=p.title, genre="", duration=round(duration, 3),
                    extra={"license": LICENSE, "source": source, "gm_program": str(program),
                           "tempo_factor": f"{tempo:.3f}"}))
    info = {"soundfont": str(sf2), "seed": seed, "max_per_album": max_per_album, "max_albums": max_albums,
            "pieces_considered": len(all_pieces)}
    return tracks, skipped, info
