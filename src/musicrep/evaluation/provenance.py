"""Has the encoder already heard these songs? Overlap between a run's training songs
and the songs a test uses: a transfer collection, or the held-out songs of the
hold-out trials and retrieval pools.

A transfer test asks how well embeddings serve a task the encoder was not trained
for. Transfer songs that are also the encoder's training songs make it a test of
memorisation instead: run on the very store an encoder trained on, the probe
scores far above what a new collection would give.

A run's training songs are the ``train`` rows of the saved splits
(``RUN/split/<concept>.csv``: track_id, concept_label, split) of the concepts it
trained on (``concept`` in ``RUN/config.yaml``; joint = artist, album and track;
the track concept reads ``track.csv``, else ``artist.csv``; a missing file is
skipped; an unknown concept reads every saved split), in the store that
``RUN/run.json`` names. A transfer song counts as a training song when it has

1. the same track id;
2. the same audio path, after resolving links and ``..``;
3. the same audio content: the SHA-1 of its stored log-mel frames (the same audio
   with the same feature settings gives identical frames). Compared only when both
   stores were prepared with the same feature settings, and only between songs
   with equal frame counts. Nothing is cached on disk.

When the training store is gone, only track ids are compared, and the warning says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..concepts import JOINT, PAPER_CONCEPTS
from ..data.splits import Split
from ..data.store import FeatureStore, open_store
from ..errors import EvaluationError, MusicrepError, SplitError, StoreError
from .runs import LoadedRun, run_store_path
from .trials import split_parts

log = logging.getLogger(__name__)

#: the split files a concept trains from, first found wins (a column concept: its own)
SPLIT_FILES: dict[str, tuple[str, ...]] = {"artist": ("artist",), "album": ("album",), "track": ("track", "artist")}


@dataclasses.dataclass(frozen=True)
class TrainingSongs:
    """The songs a run trained on.

    Attributes
    ----------
    run : the run folder
    concepts : the concepts it trained on (empty when its config names none)
    track_ids : ids of the ``train`` rows of those concepts' splits
    split_files : the split files read
    store : the training store as ``run.json`` records it (None when unrecorded)
    """

    run: Path
    concepts: tuple[str, ...]
    track_ids: frozenset[str]
    split_files: tuple[Path, ...]
    store: Path | None


def _run_config(run: Path) -> dict:
    try:
        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def run_concepts(concept: str, *, joint=None) -> tuple[str, ...]:
    """The concepts a run trains on, from its ``concept`` (and ``joint``) settings; () when unknown."""
    if not concept:
        return ()
    if concept == JOINT:
        return tuple(joint) if joint else PAPER_CONCEPTS  # runs from before ``joint`` trained the paper's three
    return (concept,)


def training_songs(*, run: str | Path, concept: str | None = None) -> TrainingSongs:
    """The training songs of a run folder (or of the run a checkpoint file lies in).

    ``concept`` is the run's trained concept when the caller knows it (e.g. from
    its checkpoint); by default it is read from ``RUN/config.yaml``.

    Raises
    ------
    SplitError
        when a split file is malformed.
    """
    run = Path(run)
    if run.is_file():
        run = run.parent
    config = _run_config(run)
    concepts = run_concepts(concept or str(config.get("concept", "") or ""), joint=config.get("joint"))
    if concepts:
        stems = [next((s for s in SPLIT_FILES.get(c, (c,)) if (run / "split" / f"{s}.csv").is_file()), None) for c in concepts]
        files = [run / "split" / f"{s}.csv" for s in dict.fromkeys(stems) if s is not None]
    else:  # config unreadable or without a concept: every saved split counts
        files = sorted((run / "split").glob("*.csv"))
    ids = frozenset(t for f in files for t, _label, part in Split.read_csv(f).rows if part == "train")
    return TrainingSongs(run=run, concepts=concepts, track_ids=ids, split_files=tuple(files), store=run_store_path(run))


class _Songs:
    """Resolved paths, frame counts and frame digests of some tracks of one store, on demand.

    ``digests`` is shared by every ``_Songs`` of one call, keyed by (store folder,
    track id), so a store's frames are hashed at most once per call.
    """

    def __init__(self, store: FeatureStore, track_ids: Sequence[str], digests: dict[tuple[str, str], str]):
        self.store = store
        self.ids = [t for t in track_ids if t in store]
        self._key = str(Path(store.path).resolve())
        self.digests = digests

    def paths(self) -> dict[str, str]:
        by_id = {t.track_id: t.path for t in self.store.catalog}
        return {t: str(Path(by_id[t]).expanduser().resolve()) for t in self.ids}

    def lengths(self) -> dict[str, int]:
        return {t: self.store.n_frames(t) for t in self.ids}

    def digest(self, track_id: str) -> str:
        key = (self._key, track_id)
        if key not in self.digests:
            self.digests[key] = hashlib.sha1(self.store.frames(track_id).tobytes()).hexdigest()
        return self.digests[key]


def _same_content(target: _Songs, train: _Songs) -> set[str]:
    """Target ids whose frames equal some training song's (hashing only equal-length songs)."""
    by_length: dict[int, list[str]] = {}
    for t, n in train.lengths().items():
        by_length.setdefault(n, []).append(t)
    candidates = {t: n for t, n in target.lengths().items() if n in by_length}
    digests = {train.digest(t) for n in set(candidates.values()) for t in by_length[n]}
    return {t for t in candidates if target.digest(t) in digests}


def _open(path: Path, opened: dict[str, Any]) -> Any:
    """The store at ``path``, opened once per call; None when it is gone or unreadable."""
    key = str(Path(path).resolve())
    if key not in opened:
        try:
            opened[key] = open_store(Path(path))
        except StoreError as exc:
            log.info("training store %s cannot be opened (%s)", path, exc)
            opened[key] = None
    return opened[key]


def _overlap_line(label: str, info: TrainingSongs, target: _Songs, opened: dict[str, Any]) -> str | None:
    """The warning for one run, or None when none of the target songs is a training song."""
    by_id = set(target.ids) & info.track_ids
    train_store = _open(info.store, opened) if info.store is not None else None
    kinds = [f"same track id: {len(by_id)}"]
    by_path: set[str] = set()
    by_content: set[str] = set()
    note = ""
    if train_store is None:
        where = (f"its training store {info.store} is gone" if info.store is not None
                 else "its run.json names no training store")
        note = f"; {where}, so only track ids were compared"
    else:
        train = _Songs(train_store, sorted(info.track_ids), target.digests)
        train_paths = set(train.paths().values())
        by_path = {t for t, p in target.paths().items() if p in train_paths}
        kinds.append(f"same audio path: {len(by_path)}")
        if train_store.feature_config.hash() == target.store.feature_config.hash():
            by_content = _same_content(target, train)
            kinds.append(f"same audio content: {len(by_content)}")
        else:
            kinds.append("audio content not compared: the stores' feature settings differ")
    hit = by_id | by_path | by_content
    if not hit:
        log.info("%s: none of the %d transfer songs is among its %d training songs%s", label, len(target.ids),
                 len(info.track_ids), note)
        return None
    return (f"{label}: {len(hit)} of {len(target.ids)} transfer songs are training songs of this encoder "
            f"({', '.join(kinds)}); transfer accuracy on them measures memorisation, not transfer{note}")


def transfer_overlap(runs: Sequence[str | Path], *, store: FeatureStore | str | Path, track_ids: Sequence[str] | None = None) -> list[str]:
    """Warnings for runs whose training songs include songs of a transfer collection.

    Parameters
    ----------
    runs : run folders (or checkpoint files inside them)
    store : FeatureStore (or path) of the transfer collection
    track_ids : the transfer songs to check (default: every song of ``store``)

    Returns
    -------
    list[str]
        One line per run with overlap (or whose split cannot be read), e.g.
        ``"runs/joint: 120 of 300 transfer songs are training songs of this encoder
        (same track id: 120, same audio path: 120, same audio content: 120); ..."``;
        empty when every run is clean. A run without a saved split cannot be
        checked and is only logged.
    """
    store = open_store(store)
    target = _Songs(store, list(store.track_ids) if track_ids is None else list(track_ids), {})
    opened: dict[str, Any] = {str(Path(store.path).resolve()): store}
    lines = []
    for run in runs:
        try:
            info = training_songs(run=run)
        except MusicrepError as exc:
            lines.append(f"{run}: cannot tell whether the transfer songs are among its training songs ({exc})")
            continue
        if not info.split_files:
            log.info("%s: no saved split, so its training songs are unknown; overlap not checked", run)
            continue
        line = _overlap_line(str(run), info, target, opened)
        if line:
            lines.append(line)
    return lines


def overlap_warnings(runs: Sequence[str], *, store: FeatureStore, track_ids: Sequence[str]) -> list[str]:
    """:func:`transfer_overlap` of ``runs`` on a probe's songs ``track_ids``, each line also logged as a warning."""
    if not runs:
        return []
    warnings = transfer_overlap(runs, store=store, track_ids=track_ids)
    for line in warnings:
        log.warning("%s", line)
    return warnings


# --------------------------------------------------------------------------- held-out songs


def trial_overlap(runs: Sequence[LoadedRun], *, split: Mapping[str, Any]) -> list[str]:
    """One line per run whose training songs include songs the given splits hold out (valid or test).

    Parameters
    ----------
    runs : the loaded runs (:func:`musicrep.evaluation.runs.load_runs`)
    split : the trials' or pools' splits (:func:`musicrep.evaluation.trials.load_split`)
    """
    held: dict[str, set[str]] = {
        name: {t for t, p in split_parts(entry)[0].items() if p != "train"} for name, entry in split.items()
    }
    lines = []
    for run in runs:
        try:
            trained = training_songs(run=run.run_dir, concept=run.info.concept).track_ids
        except SplitError:
            continue
        found = {name: len(trained & ids) for name, ids in held.items() if trained & ids}
        if found:
            lines.append(f"{run.run_dir}: " + ", ".join(f"{n} of its training songs are {name}-split valid/test songs"
                                                        for name, n in found.items()))
    return lines


def refuse_overlap(problems: Sequence[str], *, held: str, verb: str, allow_overlap: bool) -> None:
    """Raise :class:`~musicrep.errors.EvaluationError` listing :func:`trial_overlap`'s ``problems``
    unless ``allow_overlap`` (``held``: what holds the songs out; ``verb``: what ``--allow-overlap`` lets happen)."""
    if problems and not allow_overlap:
        raise EvaluationError(
            f"these runs trained on songs that {held} hold out, so their figures would include songs they "
            "trained on:\n  " + "\n  ".join(problems)
            + "\nTrain the runs on one store with one seed (their splits are then drawn together), or pass "
            f"--allow-overlap to {verb} them anyway"
        )
