"""The transfer corpus: folk dance tunes from the music21 corpus, rendered to audio.

Owns the tunes: parsing the ABC books, tune types, tune groups, the seeded choice
of tunes and their splits. Each ABC tune goes ``abc2midi`` -> MIDI -> FluidSynth
(a fresh synthesizer per tune, :mod:`musicrep.data.corpus.render`) -> 22,050 Hz
mono FLAC. The label (``genre``) is the tune type (reel,
jig, hornpipe, ...). Every tune gets a randomly chosen melodic General MIDI
instrument and a tempo jitter drawn from a generator seeded by the seed and the
tune's id, so neither instrument nor tempo can stand in for the label, and a tune
renders the same way whichever subset is built. ``split`` is assigned per group of
same tunes (same normalised title or same opening notes, across books), so a tune
never appears in two splits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from ... import progress
from ...errors import CorpusError
from ..catalog import Track, slugify
from . import tools
from .render import render_choice, render_pool, render_to_flac, rendered_skip

log = logging.getLogger(__name__)

#: music21 corpus folder -> (collection name, licence note).
COLLECTIONS: dict[str, str] = {
    "oneills1850": "O'Neill's Music of Ireland (1850)",
    "ryansMammoth": "Ryan's Mammoth Collection (1883)",
    "airdsAirs": "Aird's Selection of Airs (1782-1803)",
}
LICENSE = "public domain melody; ABC transcription from the music21 corpus (BSD/LGPL, see music21 corpus/license.txt)"

#: Spellings of the R: field and title words -> tune type.
TYPE_ALIASES: dict[str, str] = {
    "reel": "reel", "reels": "reel",
    "jig": "jig", "jigs": "jig", "double jig": "jig", "single jig": "jig",
    "slip jig": "slip jig", "slipjig": "slip jig", "slip-jig": "slip jig",
    "hornpipe": "hornpipe", "hornpipes": "hornpipe",
    "strathspey": "strathspey", "strathspeys": "strathspey",
    "air": "air", "slow air": "air", "airs": "air",
    "march": "march", "quick march": "march", "quick step": "march", "quickstep": "march",
    "slow march": "march", "waltz": "waltz", "clog": "clog", "highland fling": "fling",
    "fling": "fling", "set dance": "set dance", "polka": "polka", "slide": "slide",
}
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train / valid / test, by tune group


@dataclasses.dataclass(frozen=True)
class Tune:
    """One ABC tune and what the catalog says about it."""

    tune_id: str
    collection: str  # music21 corpus folder
    book: str  # file inside it
    number: str  # X: field
    title: str
    tune_type: str  # normalised, "" when unknown
    abc: str  # the tune's own text, X: line first
    header: str  # the file's header (before the first X:), needed by some books


def normalize_type(value: str) -> str:
    """Tune type from an R: field value ("" when not a known type)."""
    key = re.sub(r"[^a-z ]+", " ", (value or "").lower()).strip()
    key = re.sub(r"\s+", " ", key)
    return TYPE_ALIASES.get(key, "")


def type_from_title(title: str) -> str:
    """Tune type named at the end of a title ("The Ranting Highlandman Reel")."""
    words = re.sub(r"[^a-z ]+", " ", (title or "").lower()).split()
    for n in (2, 1):
        if len(words) >= n and " ".join(words[-n:]) in TYPE_ALIASES:
            return TYPE_ALIASES[" ".join(words[-n:])]
    return ""


def parse_abc(text: str, *, collection: str, book: str, id_prefix: str | None = None) -> list[Tune]:
    """Split an ABC book into tunes; read T:, R: (or the title) for title and type.

    Tune ids are ``{id_prefix}-{book}-{X number}``; ``id_prefix`` defaults to the
    slug of ``collection`` cut to 12 characters (the folk corpus's ids).
    """
    parts = re.split(r"(?m)^(?=X:)", text)
    header = parts[0] if parts and not parts[0].startswith("X:") else ""
    tunes = []
    for part in parts:
        if not part.startswith("X:"):
            continue
        fields: dict[str, str] = {}
        for line in part.splitlines():
            m = re.match(r"^([A-Za-z]):\s*(.*)$", line)
            if m and m.group(1) not in fields:
                fields[m.group(1)] = m.group(2).strip()
        number = re.sub(r"\D", "", fields.get("X", "")) or str(len(tunes) + 1)
        title = fields.get("T", "").rstrip(". ") or f"{book} {number}"
        title = re.sub(r"^(.*), (The|A|An)$", r"\2 \1", title)  # "Storyteller, The" -> "The Storyteller"
        ttype = normalize_type(fields.get("R", "")) or type_from_title(title) or type_from_title(Path(book).stem)
        if not ttype:
            # Ryan's files are named after the tune: "AcrobatsHornpipe.abc"
            ttype = type_from_title(re.sub(r"([a-z])([A-Z])", r"\1 \2", Path(book).stem))
        prefix = id_prefix or slugify(collection, max_len=12)
        tune_id = f"{prefix}-{slugify(Path(book).stem, max_len=30)}-{number}"
        tunes.append(Tune(tune_id, collection, book, number, title, ttype, part, header))
    return tunes


def load_tunes(*, corpus_dir: Path | None = None, collections=tuple(COLLECTIONS)) -> list[Tune]:
    """All tunes of the folk collections of the music21 corpus (or ``corpus_dir``)."""
    if corpus_dir is None:
        try:
            import music21  # deferred: optional (musicrep[corpus]) and slow to import; only its folder is needed
        except ImportError:
            raise CorpusError("the folk corpus needs music21: pip install 'musicrep[corpus]'") from None
        corpus_dir = Path(music21.__file__).parent / "corpus"
    tunes: list[Tune] = []
    for coll in collections:
        folder = Path(corpus_dir) / coll
        if not folder.is_dir():
            raise CorpusError(f"{folder}: music21 corpus collection not found; reinstall music21")
        for path in sorted(folder.glob("*.abc")):
            text = path.read_text(encoding="utf-8", errors="replace")
            tunes.extend(parse_abc(text, collection=coll, book=path.name))
    ids = Counter(t.tune_id for t in tunes)
    return [t for t in tunes if ids[t.tune_id] == 1] + _dedupe_ids([t for t in tunes if ids[t.tune_id] > 1])


def _dedupe_ids(tunes: list[Tune]) -> list[Tune]:
    seen: Counter = Counter()
    out = []
    for t in tunes:
        seen[t.tune_id] += 1
        out.append(dataclasses.replace(t, tune_id=f"{t.tune_id}-{seen[t.tune_id]}"))
    return out


def _title_key(title: str) -> str:
    words = re.sub(r"[^a-z ]+", " ", title.lower()).split()
    words = [w for w in words if w not in ("the", "a", "an", "of", "s") and w not in TYPE_ALIASES]
    return " ".join(words)


def _melody_key(abc: str) -> str:
    body = "\n".join(ln for ln in abc.splitlines() if not re.match(r"^[A-Za-z]:", ln))
    body = re.sub(r'"[^"]*"|![^!]*!|\{[^}]*\}|\[[A-Za-z]:[^\]]*\]', "", body)
    return "".join(re.findall(r"[A-Ga-g]", body))[:24]


def tune_groups(tunes: list[Tune]) -> dict[str, str]:
    """tune_id -> group id; tunes sharing a normalised title or opening notes join one group."""
    parent = {t.tune_id: t.tune_id for t in tunes}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first: dict[str, str] = {}
    for t in tunes:
        for key in ("T:" + _title_key(t.title), "M:" + _melody_key(t.abc)):
            if len(key) < 2 + 8:  # too short to identify a tune
                continue
            if key in first:
                a, b = find(first[key]), find(t.tune_id)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first[key] = t.tune_id
    return {t.tune_id: find(t.tune_id) for t in tunes}


def assign_split(group: str, *, seed: int) -> str:
    """train/valid/test from a hash of (seed, group): stable for any subset."""
    u = int(hashlib.sha1(f"{seed}:{group}".encode()).hexdigest()[:8], 16) / 16**8
    return "train" if u < SPLIT_FRACTIONS[0] else "valid" if u < sum(SPLIT_FRACTIONS[:2]) else "test"


def select(tunes: list[Tune], *, max_per_class: int | None, min_class_count: int, seed: int) -> tuple[list[Tune], dict]:
    """Keep labelled tunes of classes with >= ``min_class_count`` tunes; at most
    ``max_per_class`` per class (a seeded choice). Returns (tunes, dropped counts)."""
    counts = Counter(t.tune_type for t in tunes)
    dropped = {"no tune type": counts.pop("", 0)}
    keep = {c for c, n in counts.items() if n >= min_class_count}
    dropped.update({f"rare type {c!r}": n for c, n in counts.items() if c not in keep})
    rng = np.random.default_rng(seed)
    out: list[Tune] = []
    for cls in sorted(keep):
        members = [t for t in tunes if t.tune_type == cls]
        order = rng.permutation(len(members))
        chosen = [members[i] for i in order[: max_per_class or len(members)]]
        if max_per_class and len(members) > max_per_class:
            dropped[f"over max_per_class ({cls})"] = len(members) - max_per_class
        out.extend(sorted(chosen, key=lambda t: t.tune_id))
    return out, dropped


def abc_to_midi(abc: str, *, midi_path: Path) -> None:
    """Convert one ABC tune to a MIDI file with abc2midi."""
    with tempfile.TemporaryDirectory(prefix="musicrep-abc-") as tmp:
        src = Path(tmp) / "tune.abc"
        src.write_text(abc, encoding="utf-8")
        proc = subprocess.run([tools.abc2midi(), str(src), "-o", str(midi_path), "-silent"],
                              capture_output=True, timeout=60, check=False)
    if not midi_path.is_file() or midi_path.stat().st_size == 0:
        tail = proc.stdout.decode("utf-8", "replace").strip().splitlines()[-2:]
        raise CorpusError(f"abc2midi wrote no MIDI ({' | '.join(tail) or 'no output'})")


def render_one(job: tuple) -> tuple[str, float | None, str]:
    """Worker entry: (tune_id, duration or None, error). Skips finished files."""
    tune_id, abc, dest, program, tempo = job
    return render_to_flac(tune_id, dest=Path(dest), write_midi=lambda midi: abc_to_midi(abc, midi_path=midi),
                          program=program, tempo=tempo)


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
    """Render the folk corpus into ``out_dir/audio``; return (tracks, skipped, info).

    Parameters
    ----------
    tunes : the tunes to consider (default: :func:`load_tunes`)
    max_per_class : at most this many tunes per type (None: all), the size knob
    min_class_count : types with fewer tunes (before ``max_per_class``) are dropped
    min_seconds : shorter renderings are left out
    tempo_jitter : tempo factor drawn from ``[1 - jitter, 1 + jitter]`` per tune
    seed : drives instrument, tempo, subsampling and split
    """
    return build_rendered(load=load_tunes if tunes is None else (lambda: tunes), choose=select,
                          make_track=_tune_track, desc="folk tunes", out_dir=out_dir, max_per_class=max_per_class,
                          min_class_count=min_class_count, min_seconds=min_seconds, tempo_jitter=tempo_jitter,
                          seed=seed, workers=workers, soundfont=soundfont)


def build_rendered(
    *,
    load: Callable[[], list[Tune]],
    choose: Callable[..., tuple[list[Tune], dict]],
    make_track: Callable[..., Track],
    desc: str,
    out_dir: Path,
    max_per_class: int | None,
    min_class_count: int,
    min_seconds: float,
    tempo_jitter: float,
    seed: int,
    workers: int,
    soundfont: str | Path | None,
) -> tuple[list[Track], list[dict], dict]:
    """What a rendered ABC corpus's ``build`` does (folk, essen): check the tools, read the
    tunes, group them, choose the ones to render and render them; (tracks, skipped, info).

    Parameters
    ----------
    load : reads every tune considered (the tune groups are computed over all of them)
    choose : ``choose(tunes, *, max_per_class, min_class_count, seed)`` -> (tunes to render,
        dropped counts by reason), e.g. :func:`select`
    make_track, desc : as :func:`render_tunes`
    the rest : as :func:`build`
    """
    tools.abc2midi()
    tools.require_fluidsynth()
    tools.require_pretty_midi()
    sf2 = tools.find_soundfont(soundfont)
    out_dir = Path(out_dir)
    all_tunes = load()
    groups = tune_groups(all_tunes)  # over all tunes, so subsets keep the same groups
    chosen, dropped = choose(all_tunes, max_per_class=max_per_class, min_class_count=min_class_count, seed=seed)
    skipped = [{"source": k, "reason": "", "count": n} for k, n in dropped.items() if n]
    tracks, failed = render_tunes(chosen, groups=groups, out_dir=out_dir, make_track=make_track, seed=seed,
                                  tempo_jitter=tempo_jitter, min_seconds=min_seconds, workers=workers, soundfont=sf2,
                                  desc=desc)
    skipped.extend(failed)
    info = {"soundfont": str(sf2), "seed": seed, "max_per_class": max_per_class,
            "min_class_count": min_class_count, "tempo_jitter": tempo_jitter,
            "tunes_considered": len(all_tunes)}
    return tracks, skipped, info


def render_tunes(
    chosen: list[Tune],
    *,
    groups: dict[str, str],
    out_dir: Path,
    make_track: Callable[..., Track],
    seed: int,
    tempo_jitter: float,
    min_seconds: float,
    workers: int,
    soundfont: Path,
    desc: str,
) -> tuple[list[Track], list[dict]]:
    """Render ``chosen`` into ``out_dir/audio``; return (tracks, skip records of failed or short tunes).

    Parameters
    ----------
    groups : tune_id -> tune group (:func:`tune_groups` over all tunes considered)
    make_track : ``make_track(tune, *, path, duration, source, group, program, tempo, seed)``
        -> the catalog's Track (the corpus's own artist, album, label and licence)
    seed : drives each tune's instrument and tempo (and the split, in ``make_track``)
    tempo_jitter : tempo factor drawn from ``[1 - jitter, 1 + jitter]`` per tune
    min_seconds : shorter renderings are left out
    soundfont : the resolved soundfont path
    desc : the progress bar's label
    """
    jobs, meta = _render_jobs(chosen, out_dir=out_dir, seed=seed, tempo_jitter=tempo_jitter)
    tracks, skipped = [], []
    with render_pool(render_one, jobs=jobs, soundfont=soundfont, workers=workers, chunksize=4) as results:
        for tune_id, duration, error in progress.bar(results, total=len(jobs), desc=desc, unit="tune"):
            t, program, tempo, dest = meta[tune_id]
            source = f"music21:{t.collection}/{t.book}#X:{t.number}"
            skip = rendered_skip(source, duration=duration, error=error, min_seconds=min_seconds)
            if skip is not None:
                skipped.append(skip)
                continue
            tracks.append(make_track(t, path=dest.relative_to(out_dir).as_posix(), duration=duration, source=source,
                                     group=groups[t.tune_id], program=program, tempo=tempo, seed=seed))
    return tracks, skipped


def _render_jobs(
    chosen: list[Tune], *, out_dir: Path, seed: int, tempo_jitter: float
) -> tuple[list[tuple], dict[str, tuple[Tune, int, float, Path]]]:
    """One :func:`render_one` job per tune, and tune_id -> (tune, GM program, tempo factor, FLAC path)."""
    jobs, meta = [], {}
    for t in chosen:
        program, tempo = render_choice(t.tune_id, seed=seed, tempo_jitter=tempo_jitter)
        dest = out_dir / "audio" / slugify(t.collection, max_len=20) / f"{t.tune_id}.flac"
        jobs.append((t.tune_id, t.header + "\n" + t.abc if t.header.strip() else t.abc, str(dest), program, tempo))
        meta[t.tune_id] = (t, program, tempo, dest)
    return jobs, meta


def _tune_track(
    t: Tune, *, path: str, duration: float, source: str, group: str, program: int, tempo: float, seed: int
) -> Track:
    """The catalog's Track for one rendered tune: artist = collection, label (genre) = tune type."""
    book = Path(t.book).stem
    return Track(
        track_id=t.tune_id,
        path=path,
        artist=COLLECTIONS.get(t.collection, t.collection),
        album=(f"{COLLECTIONS.get(t.collection, t.collection)}, {book}" if t.collection == "airdsAirs"
               else COLLECTIONS.get(t.collection, t.collection)),
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
