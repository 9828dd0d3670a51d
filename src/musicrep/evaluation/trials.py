"""The hold-out trials of Table 1 and the saved splits they are drawn from.

A *trial* is an anchor crop from a test song, one positive and N negatives (Lee,
Park & Nam 2019, section 4); this module reads the runs' splits and draws the
fixed, seeded trials that :mod:`musicrep.evaluation.holdout` scores every model on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..concepts import check_concept, concept_key, concept_label
from ..data.splits import load_splits, normalize_part
from ..data.store import FeatureStore
from ..errors import ConfigError, EvaluationError, SplitError

#: which saved split each concept's trials come from when the runs have no split of
#: the concept's own name (the track split is the artist split plus the songs
#: without an artist; runs made before it existed have only the artist split)
SPLIT_OF_CONCEPT: dict[str, str] = {"artist": "artist", "album": "album", "track": "artist"}


def split_name_for(concept: str, *, split: Mapping[str, Any]) -> str:
    """The split a concept's trials come from: its own when given, else :data:`SPLIT_OF_CONCEPT`'s."""
    return concept if concept in split else SPLIT_OF_CONCEPT.get(concept, concept)


# --------------------------------------------------------------------------- splits


def load_split(run_or_split_dir: str | Path) -> dict[str, Any]:
    """The saved artist and album splits of a run.

    Parameters
    ----------
    run_or_split_dir : a run folder (its ``split/`` is read) or a split folder

    Returns
    -------
    dict
        ``{"artist": Split, "album": Split}`` (:class:`musicrep.data.splits.Split`); a
        split the run does not have is absent.
    """
    path = Path(run_or_split_dir)
    split_dir = path / "split" if (path / "split").is_dir() else path
    if not split_dir.is_dir():
        raise SplitError(f"{path}: no split folder; train a run first (it saves RUN/split/)")
    return load_splits(split_dir)


def runs_split(run_dirs: Sequence[Path], *, split_from: str | Path | None = None) -> dict[str, Any]:
    """The splits of ``split_from``, else each split from the first run that has it
    (an artist run has no album split)."""
    if split_from is not None:
        return load_split(split_from)
    split: dict[str, Any] = {}
    for run_dir in run_dirs:
        for name, entry in load_split(run_dir).items():
            split.setdefault(name, entry)
    return split


def split_parts(entry: Any) -> tuple[dict[str, str], dict[str, str] | None]:
    """``({track_id: part}, {track_id: label} or None)`` of one concept's split.

    ``entry`` is a :class:`musicrep.data.splits.Split` (labels come from it) or a plain
    mapping ``{track_id: part}`` (labels then come from the catalog).
    """
    if hasattr(entry, "rows"):
        rows = list(entry.rows)
        return {t: normalize_part(p) for t, _l, p in rows}, {t: lab for t, lab, _p in rows}
    if isinstance(entry, Mapping):
        return {str(t): normalize_part(str(p)) for t, p in entry.items()}, None
    raise SplitError(f"cannot read a split from a {type(entry).__name__}; pass a splits.Split or {{track_id: part}}")


def count_labels(store: FeatureStore, *, split: Mapping[str, Any], concept: str, songs: set[str]) -> int:
    """Distinct labels among the anchor ``songs`` (the songs themselves for the track concept)."""
    if concept == "track":
        return len(songs)
    name = split_name_for(concept, split=split)
    _parts, labels = split_parts(split[name])
    if labels is not None and concept == name:
        return len({labels[t] for t in songs})
    return len({concept_label(store.catalog.by_id(t), concept=check_concept(concept)) for t in songs})


# --------------------------------------------------------------------------- trials


@dataclasses.dataclass(frozen=True)
class Trial:
    """One hold-out trial; each item is ``(track_id, start_frame)``."""

    concept: str
    anchor: tuple[str, int]
    positive: tuple[str, int]
    negatives: tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True)
class _Songs:
    """The songs one concept's trials may use: labelled and at least one segment long."""

    length: dict[str, int]  # frames per song
    label: dict[str, str]
    test: list[str]  # sorted
    valid_by_label: dict[str, list[str]]
    segment_frames: int

    def start(self, track_id: str, rng: np.random.Generator) -> int:
        """A uniform start frame of a whole segment of ``track_id``."""
        return int(rng.integers(0, self.length[track_id] - self.segment_frames + 1))


def _eligible_songs(store: FeatureStore, split: Mapping[str, Any], concept: str, segment_frames: int) -> _Songs:
    split_name = split_name_for(concept, split=split)
    if split_name not in split:
        raise SplitError(f"no {split_name} split given; the {concept} concept needs it")
    parts, split_labels = split_parts(split[split_name])
    length = {t: int(store.n_frames(t)) for t in parts if t in store.catalog}
    label: dict[str, str] = {}
    for tid in length:
        if concept == "track":
            lab = tid
        elif split_labels is not None and concept == split_name:
            lab = split_labels[tid]
        else:
            lab = concept_label(store.catalog.by_id(tid), concept=concept)
        if lab and length[tid] >= segment_frames:
            label[tid] = lab
    valid_by_label: dict[str, list[str]] = {}
    for t in sorted(label):
        if parts[t] == "valid":
            valid_by_label.setdefault(label[t], []).append(t)
    test = sorted(t for t in label if parts[t] == "test")
    return _Songs(length=length, label=label, test=test, valid_by_label=valid_by_label, segment_frames=segment_frames)


def _anchors(songs: _Songs, concept: str) -> list[str]:
    """The test songs that can be anchors: two non-overlapping segments (track), else a valid-set song of their label."""
    if concept == "track":
        anchors = [t for t in songs.test if songs.length[t] >= 2 * songs.segment_frames]
    else:
        anchors = [t for t in songs.test if songs.label[t] in songs.valid_by_label]
    if not anchors:
        raise EvaluationError(
            f"{concept}: no test song can be an anchor (test songs: {len(songs.test)}; an anchor needs "
            + ("two non-overlapping segments" if concept == "track" else "a valid-set song with its label")
            + "); use a larger collection"
        )
    return anchors


def _draw_trial(songs: _Songs, *, concept: str, anchor: str, n_negatives: int, test_labels: np.ndarray,
                rng: np.random.Generator) -> Trial:
    """One trial of ``anchor``: its start, the positive, then the negatives, drawn in that order."""
    others = np.flatnonzero(test_labels != songs.label[anchor])
    if len(others) < n_negatives:
        raise EvaluationError(
            f"{concept}: only {len(others)} test songs have a label other than {songs.label[anchor]!r}; "
            f"{n_negatives} negatives are needed: lower --negatives or use a larger collection"
        )
    seg = songs.segment_frames
    if concept == "track":
        # two starts at least one segment apart, uniformly: x <= y, then shift y
        hi = songs.length[anchor] - 2 * seg
        x, y = sorted(int(v) for v in rng.integers(0, hi + 1, size=2))
        a_start, p_start = (x, y + seg) if rng.random() < 0.5 else (y + seg, x)
        positive = (anchor, p_start)
    else:
        a_start = songs.start(anchor, rng)
        pool = songs.valid_by_label[songs.label[anchor]]
        pos = pool[int(rng.integers(0, len(pool)))]
        positive = (pos, songs.start(pos, rng))
    neg_ids = [songs.test[i] for i in rng.choice(others, size=n_negatives, replace=False)]
    return Trial(concept=concept, anchor=(anchor, a_start), positive=positive,
                 negatives=tuple((t, songs.start(t, rng)) for t in neg_ids))


def build_trials(
    *,
    store: FeatureStore,
    split: Mapping[str, Any],
    concept: str,
    n_trials: int = 1000,
    n_negatives: int = 4,
    seed: int = 0,
    segment_frames: int | None = None,
) -> list[Trial]:
    """Fixed, seeded hold-out trials for one concept.

    Artist / album: the positive is a crop of a **valid**-set song with the anchor's
    label, the negatives crops of N distinct **test**-set songs with other labels;
    track: the positive is another, non-overlapping crop of the anchor song.

    Parameters
    ----------
    store : a :class:`musicrep.data.store.FeatureStore` (``catalog``, ``n_frames``)
    split : ``{"artist": Split, "album": Split}`` (see :func:`load_split`); plain
        ``{track_id: part}`` mappings work too
    concept : "artist", "album" or "track"
    n_trials : number of trials; anchors cycle over the eligible test songs in a
        seeded order, so each is used about equally often
    n_negatives : N, negatives per trial (chance is 1 / (N + 1))
    seed : the trials depend only on this, the split and the track lengths
    segment_frames : crop length in frames (default: the store's feature settings)

    Returns
    -------
    list of Trial, length ``n_trials``
    """
    check_concept(concept)
    segment_frames = segment_frames or store.feature_config.segment_frames
    if n_trials < 1 or n_negatives < 1:
        raise ConfigError(f"n_trials={n_trials} and n_negatives={n_negatives} must be >= 1")
    songs = _eligible_songs(store, split, concept, segment_frames)
    anchors = _anchors(songs, concept)
    test_labels = np.array([songs.label[t] for t in songs.test])
    rng = np.random.default_rng([seed, concept_key(concept), n_negatives])
    trials: list[Trial] = []
    order: list[str] = []
    for _ in range(n_trials):
        if not order:
            order = [anchors[i] for i in rng.permutation(len(anchors))]
        trials.append(_draw_trial(songs, concept=concept, anchor=order.pop(), n_negatives=n_negatives,
                                  test_labels=test_labels, rng=rng))
    return trials
