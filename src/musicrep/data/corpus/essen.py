"""A second rendered transfer corpus: songs of the Essen Folksong Collection, label = region.

The tunes are the Essen Folksong Collection (EsAC) as music21 ships it, in ABC
(``music21/corpus/essenFolksong/*.abc``); the label (``genre``) is the region of
the book a tune comes from: China (``han1``, ``han2``), Luxembourg (``lux``),
Lorraine (``lot``) and Germany (the German song collections: ``altdeu*``,
``ballad*``, ``boehme*``, ``dva0``, ``erk*``, ``fink0``, ``kinder0``,
``zuccal0``). Tunes are parsed, grouped, chosen, split and rendered exactly as the
folk tunes are (:mod:`musicrep.data.corpus.folk`): ``abc2midi`` -> MIDI ->
FluidSynth -> 22,050 Hz mono FLAC, a random melodic General MIDI instrument and
tempo jitter per tune from a generator seeded by the seed and the tune's id, and
``split`` by tune group (same normalised title or same opening notes; groups over
all tunes read, so a song's variants never cross splits).

Region rule. A tune takes its book's region, checked against the book's ``O:``
(origin) fields:

- the Chinese, Luxembourg and Lorraine books are single-region collections: every
  ``O:`` names China (one ``han1`` tune names only "Yunnan, Menghai", a Chinese
  province), Luxemburg or Lothringen, so every tune keeps the book's region;
- the German books mix in songs from elsewhere: the ballad books print variants
  from Eastern and South-Eastern Europe, Austria, Switzerland, the Netherlands and
  Lorraine (589 of their 1,174 tunes), ``dva0`` holds 68 songs from Lorraine,
  ``zuccal0`` 93 from Austria and Switzerland, the others a few. A tune of a German
  book is kept only when its ``O:`` names Deutschland and names neither Lothringen
  nor Luxemburg (the other classes' regions): 5,109 of the 5,979 tunes; the rest
  are left out and counted in the skip report. A tune without ``O:`` keeps its
  book's region.

Left out: ``folkHaydn`` (50 Scottish songs of Haydn's arrangements, though their
``O:`` says Deutschland), ``irl`` (62 Irish tunes, too few for a class),
``test*`` (small test files mixing Chinese, German, Irish and other tunes) and
``variant0`` (29 variants of a few German and Swiss songs, a variant study set,
not a regional collection).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from pathlib import Path

from ...errors import CorpusError
from ..catalog import Track
from .folk import Tune, assign_split, build_rendered, parse_abc, select

log = logging.getLogger(__name__)

FOLDER = "essenFolksong"  # inside music21's corpus folder
ID_PREFIX = "essen"

#: Region (the label) -> the books (file stems) that hold it.
REGIONS: dict[str, tuple[str, ...]] = {
    "China": ("han1", "han2"),
    "Luxembourg": ("lux",),
    "Lorraine": ("lot",),
    "Germany": ("altdeu10", "altdeu20", "ballad10", "ballad20", "ballad30", "ballad40", "ballad50", "ballad60",
                "ballad70", "ballad80", "boehme10", "boehme20", "dva0", "erk5", "erk10", "erk20", "erk30", "fink0",
                "kinder0", "zuccal0"),
}
#: Region -> (pattern its O: field must match, pattern it must not match); None: the book's region, unchecked.
ORIGIN_RULES: dict[str, tuple[str, str] | None] = {
    "China": None,
    "Luxembourg": None,
    "Lorraine": None,
    "Germany": (r"Deutschland", r"Lothring|Luxemb"),
}
#: Book-name prefix -> the source collection (the catalog's artist).
SOURCES: dict[str, str] = {
    "han": "Essen Folksong Collection: Han Chinese songs",
    "lux": "Essen Folksong Collection: Luxembourg songs",
    "lot": "Essen Folksong Collection: Lorraine songs",
    "altdeu": "Essen Folksong Collection: Altdeutsch",
    "ballad": "Essen Folksong Collection: Balladen",
    "boehme": "Essen Folksong Collection: Böhme",
    "dva": "Essen Folksong Collection: Deutsches Volksliedarchiv",
    "erk": "Essen Folksong Collection: Erk",
    "fink": "Essen Folksong Collection: Fink",
    "kinder": "Essen Folksong Collection: Kinderlieder",
    "zuccal": "Essen Folksong Collection: Zuccalmaglio",
}
LICENSE = ("folk melodies; Essen Folksong Collection (EsAC, Helmut Schaffrath; Ewa Dahlig-Turek permits "
           "non-commercial distribution and use in music21; legal status unclear), ABC encodings by Seymour "
           "Shlien, from the music21 corpus (see music21 corpus/license.txt and corpus/essenFolksong/license.txt): "
           "non-commercial use only")


def book_region(book: str) -> str:
    """The region (label) of a book of the collection, by file name ("" when not part of the corpus)."""
    stem = Path(book).stem
    return next((region for region, books in REGIONS.items() if stem in books), "")


def source_name(book: str) -> str:
    """The source collection a book belongs to (the catalog's artist)."""
    stem = Path(book).stem
    return next((name for prefix, name in SOURCES.items() if stem.startswith(prefix)),
                f"Essen Folksong Collection: {stem}")


def origin(abc: str) -> str:
    """A tune's ``O:`` (origin) field ("" when it has none)."""
    m = re.search(r"(?m)^O:[ \t]*(.*?)\s*$", abc)
    return m.group(1) if m else ""


def tune_region(book: str, *, abc: str) -> str:
    """The label of one tune: its book's region when its ``O:`` agrees (see the module docstring), else ""."""
    region = book_region(book)
    rule = ORIGIN_RULES.get(region)
    where = origin(abc)
    if not region or rule is None or not where:
        return region
    must, must_not = rule
    return region if re.search(must, where) and not re.search(must_not, where) else ""


def parse_book(text: str, *, book: str) -> list[Tune]:
    """The tunes of one Essen book, each labelled (``tune_type``) with its region ("" when left out)."""
    return [dataclasses.replace(t, tune_type=tune_region(book, abc=t.abc))
            for t in parse_abc(text, collection=FOLDER, book=book, id_prefix=ID_PREFIX)]


def load_tunes(*, corpus_dir: Path | None = None) -> list[Tune]:
    """All tunes of the corpus's books in music21's corpus (or ``corpus_dir``), those left out with label ""."""
    if corpus_dir is None:
        try:
            import music21  # deferred: optional (musicrep[corpus]) and slow to import; only its folder is needed
        except ImportError:
            raise CorpusError("the essen corpus needs music21: pip install 'musicrep[corpus]'") from None
        corpus_dir = Path(music21.__file__).parent / "corpus"
    folder = Path(corpus_dir) / FOLDER
    tunes: list[Tune] = []
    for stem in (s for books in REGIONS.values() for s in books):
        path = folder / f"{stem}.abc"
        if not path.is_file():
            raise CorpusError(f"{path}: Essen book not found in the music21 corpus; reinstall music21")
        tunes.extend(parse_book(path.read_text(encoding="utf-8", errors="replace"), book=path.name))
    dup = [i for i, n in Counter(t.tune_id for t in tunes).items() if n > 1]
    if dup:
        raise CorpusError(f"Essen books: {len(dup)} tune ids repeat (first {dup[0]}); the X: numbers must be unique")
    return tunes


def build(
    *,
    out_dir: Path,
    tunes: list[Tune] | None = None,
    max_per_class: int | None = None,
    min_class_count: int = 50,
    min_seconds: float = 5.0,
    tempo_jitter: float = 0.1,
    seed: int = 0,
    workers: int = 2,
    soundfont: str | Path | None = None,
) -> tuple[list[Track], list[dict], dict]:
    """Render the essen corpus into ``out_dir/audio``; return (tracks, skipped, info).

    Parameters
    ----------
    tunes : the tunes to consider (default: :func:`load_tunes`); those labelled ""
        join the tune groups but are not rendered
    max_per_class : at most this many tunes per region (None: all), a seeded choice; the size knob
    min_class_count : regions with fewer tunes (before ``max_per_class``) are dropped
    min_seconds : shorter renderings are left out
    tempo_jitter : tempo factor drawn from ``[1 - jitter, 1 + jitter]`` per tune
    seed : drives instrument, tempo, subsampling and split
    """
    return build_rendered(load=load_tunes if tunes is None else (lambda: tunes), choose=select_regions,
                          make_track=_tune_track, desc="essen tunes", out_dir=out_dir, max_per_class=max_per_class,
                          min_class_count=min_class_count, min_seconds=min_seconds, tempo_jitter=tempo_jitter,
                          seed=seed, workers=workers, soundfont=soundfont)


def select_regions(
    tunes: list[Tune], *, max_per_class: int | None, min_class_count: int, seed: int
) -> tuple[list[Tune], dict]:
    """The tunes to render: those with a region, at most ``max_per_class`` per region
    (:func:`musicrep.data.corpus.folk.select`). Returns (tunes, dropped counts)."""
    labelled = [t for t in tunes if t.tune_type]
    chosen, dropped = select(labelled, max_per_class=max_per_class, min_class_count=min_class_count, seed=seed)
    left_out = Counter(book_region(t.book) or Path(t.book).stem for t in tunes if not t.tune_type)
    dropped.update({f"O: outside the region ({region} book)": n for region, n in sorted(left_out.items())})
    return chosen, dropped


def _tune_track(
    t: Tune, *, path: str, duration: float, source: str, group: str, program: int, tempo: float, seed: int
) -> Track:
    """The catalog's Track for one rendered tune: artist = source collection, label (genre) = region."""
    artist = source_name(t.book)
    return Track(
        track_id=t.tune_id,
        path=path,
        artist=artist,
        album=f"{artist}, {Path(t.book).stem}",
        title=t.title,
        genre=t.tune_type,
        duration=round(duration, 3),
        extra={
            "split": assign_split(group, seed=seed),
            "tune_group": group,
            "license": LICENSE,
            "source": source,
            "gm_program": str(program),
            "tempo_factor": f"{tempo:.3f}",
        },
    )
