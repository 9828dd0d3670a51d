"""Concept samplers: batches of (anchor, positive, N negatives) random crops.

The rules (Lee, Park & Nam 2019, section 4), for a split's train/valid/test sets:

=========  ====================  =================================  ==============================
mode       anchor from           positive                            negatives
=========  ====================  =================================  ==============================
train      train                 train song, same label, not anchor  train songs, other labels
valid      valid                 train song with the anchor's label  valid songs, other labels
test       test                  valid song with the anchor's label  test songs, other labels
=========  ====================  =================================  ==============================

The label is the artist (artist concept), the album (album concept) or the song
itself (track concept, which uses the artist split). For the track concept the
positive is always another window of the anchor song overlapping it by at most
half a segment, and the negatives are other songs of the negatives' set.

Every crop is ``segment_frames`` (129) frames read from the memory-mapped store
through the :class:`~musicrep.data.store.FeatureStore` API only; the store is never
loaded whole.

Randomness: a batch is a pure function of ``(seed, rank, concept, mode, step)``
through :func:`batch_rng`. Nothing needs saving to resume exactly, and worker
processes, a prefetch thread or the main process give the same batches.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..concepts import check_concept, concept_key
from ..config import SEGMENT_FRAMES
from ..data.splits import Split
from ..data.store import FeatureStore, open_store
from ..errors import SplitError

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("train", "valid", "test")
# Which set the anchor, the positive and the negatives come from, per mode.
_POOLS = {"train": ("train", "train", "train"), "valid": ("valid", "train", "valid"), "test": ("test", "valid", "test")}


def batch_rng(*, seed: int, rank: int, concept: str, mode: str, step: int) -> np.random.Generator:
    """The generator for one batch: independent streams per seed, rank, concept, mode and step."""
    return np.random.default_rng([seed, rank, concept_key(concept), MODES.index(mode), step])


def min_track_gap(segment_frames: int) -> int:
    """Smallest start offset between two windows that overlap by at most 50%."""
    return segment_frames - segment_frames // 2


@dataclasses.dataclass
class Batch:
    """One concept's batch.

    Attributes
    ----------
    segments : float32 [B, 2 + N, T, n_mels]: anchor, positive, then N negatives
    tracks : int [B, 2 + N], indices into the sampler's ``track_ids``
    starts : int [B, 2 + N], the first frame of each crop
    """

    segments: np.ndarray
    tracks: np.ndarray
    starts: np.ndarray

    @property
    def anchor(self) -> np.ndarray:
        """float32 [B, T, n_mels]"""
        return self.segments[:, 0]

    @property
    def positive(self) -> np.ndarray:
        """float32 [B, T, n_mels]"""
        return self.segments[:, 1]

    @property
    def negatives(self) -> np.ndarray:
        """float32 [B, N, T, n_mels]"""
        return self.segments[:, 2:]


class ConceptSampler:
    """Draws batches for one concept and mode from a feature store.

    Parameters
    ----------
    store : a :class:`~musicrep.data.store.FeatureStore` (only its public API is used)
    split : the concept's split (the artist split for the track concept)
    concept : "artist", "album" or "track"
    mode : "train", "valid" or "test"
    negatives : N, negatives per anchor
    segment_frames : crop length in frames
    distinct_negatives : the N negatives of an anchor are N different songs (the
        authors'); False draws them with replacement
    """

    def __init__(self, *, store: FeatureStore, split: Split, concept: str, mode: str, negatives: int, segment_frames: int = SEGMENT_FRAMES,
                 distinct_negatives: bool = True):
        check_concept(concept)
        if concept != "track" and split.concept != concept:  # the track concept samples the artist split
            raise SplitError(f"a {concept} sampler needs the {concept} split, not the {split.concept} split")
        if mode not in MODES:
            raise SplitError(f"unknown sampling mode {mode!r}; use one of {list(MODES)}")
        if negatives < 0:
            raise SplitError(f"negatives={negatives} must be at least 0 (0: in-batch negatives only)")
        self.store, self.concept, self.mode = store, concept, mode
        self.negatives, self.segment_frames = negatives, segment_frames
        self.distinct_negatives = distinct_negatives
        self.gap = min_track_gap(segment_frames)
        labels = split.labels()
        anchor_set, pos_set, neg_set = _POOLS[mode]
        ids = {s: [t for t in split.track_ids(s) if store.n_frames(t) >= segment_frames] for s in set(_POOLS[mode])}
        anchor_ids = ids[anchor_set]
        if concept == "track":
            # The anchor song must hold two windows that overlap by at most half a segment.
            anchor_ids = [t for t in anchor_ids if store.n_frames(t) >= segment_frames + self.gap]
            if len(anchor_ids) < len(ids[anchor_set]):
                log.info("track concept: %d %s song(s) too short for two windows are not anchors",
                         len(ids[anchor_set]) - len(anchor_ids), anchor_set)
            labels = {t: t for t in labels}
        self.track_ids: list[str] = sorted({t for s in ids.values() for t in s})
        index = {t: i for i, t in enumerate(self.track_ids)}
        self._n_frames = np.array([store.n_frames(t) for t in self.track_ids], dtype=np.int64)
        label_names = sorted({labels[t] for t in self.track_ids})
        code = {name: i for i, name in enumerate(label_names)}
        self._label = np.array([code[labels[t]] for t in self.track_ids], dtype=np.int64)
        self.anchors = np.array([index[t] for t in anchor_ids], dtype=np.int64)
        self.negative_pool = np.array([index[t] for t in ids[neg_set]], dtype=np.int64)
        if len(self.anchors) == 0:
            raise SplitError(f"{concept}/{mode}: no usable anchor songs in the {anchor_set} set")
        if len(set(self._label[self.negative_pool])) < 2:
            raise SplitError(f"{concept}/{mode}: the {neg_set} set needs songs of at least 2 {concept}s for negatives")
        # Positive candidates per label (artist/album); the track concept uses the anchor song.
        self._positives: dict[int, np.ndarray] = {}
        if concept != "track":
            by_label: dict[int, list[int]] = {}
            for t in ids[pos_set]:
                by_label.setdefault(int(self._label[index[t]]), []).append(index[t])
            self._positives = {k: np.array(v, dtype=np.int64) for k, v in by_label.items()}
            need = 2 if pos_set == anchor_set else 1
            for a in self.anchors:
                if len(self._positives.get(int(self._label[a]), ())) < need:
                    raise SplitError(
                        f"{concept}/{mode}: {self.track_ids[a]!r} has no other {pos_set} song of its {concept} "
                        "to serve as positive; use more training songs per label"
                    )
        if distinct_negatives:
            pool_labels = self._label[self.negative_pool]
            fewest = min(int((pool_labels != lab).sum()) for lab in set(self._label[self.anchors].tolist()))
            if fewest < negatives:
                raise SplitError(
                    f"{concept}/{mode}: an anchor has only {fewest} {neg_set} songs of other {concept}s, fewer than "
                    f"{negatives} distinct negatives; lower negatives, use more songs, or set distinct_negatives=false"
                )

    def __repr__(self) -> str:
        return (f"ConceptSampler({self.concept}/{self.mode}: {len(self.anchors)} anchors, "
                f"{len(self.negative_pool)} negative songs, N={self.negatives})")

    def _random_starts(self, rng: np.random.Generator, tracks: np.ndarray) -> np.ndarray:
        span = self._n_frames[tracks] - self.segment_frames + 1
        return (rng.random(tracks.shape) * span).astype(np.int64)

    def _track_pair_starts(self, rng: np.random.Generator, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Anchor and positive starts at least ``gap`` frames apart, uniform over such pairs' anchors."""
        last = self._n_frames[tracks] - self.segment_frames  # last valid start
        a = self._random_starts(rng, tracks)
        left = np.maximum(0, a - self.gap + 1)  # starts 0 .. a-gap
        right = np.maximum(0, last - (a + self.gap) + 1)  # starts a+gap .. last
        bad = (left + right) == 0
        while bad.any():  # an anchor start with no far-enough partner: redraw it
            a[bad] = self._random_starts(rng, tracks[bad])
            left = np.maximum(0, a - self.gap + 1)
            right = np.maximum(0, last - (a + self.gap) + 1)
            bad = (left + right) == 0
        k = (rng.random(tracks.shape) * (left + right)).astype(np.int64)
        p = np.where(k < left, k, a + self.gap + (k - left))
        return a, p

    def sample(self, *, batch_size: int, rng: np.random.Generator) -> Batch:
        """Draw one batch.

        Returns
        -------
        Batch with ``segments`` float32 [batch_size, 2 + N, T, n_mels]
        """
        tracks, starts = self.draw(batch_size=batch_size, rng=rng)
        T = self.segment_frames
        segments = np.empty((*tracks.shape, T, self._n_mels()), dtype=np.float32)
        for (i, j), t in np.ndenumerate(tracks):
            segments[i, j] = self.store.crop(self.track_ids[t], start=int(starts[i, j]), length=T)
        return Batch(segments=segments, tracks=tracks, starts=starts)

    def draw(self, *, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Which crops one batch holds, without reading them (:meth:`sample` reads them;
        :mod:`musicrep.training.resident` gathers them on a device).

        Returns
        -------
        tracks : int64 [batch_size, 2 + N], indices into ``track_ids`` (anchor, positive, negatives)
        starts : int64 [batch_size, 2 + N], each crop's first frame
        """
        B, N = batch_size, self.negatives
        anchor = self.anchors[rng.integers(len(self.anchors), size=B)]
        a_label = self._label[anchor]
        tracks = np.empty((B, 2 + N), dtype=np.int64)
        starts = np.empty((B, 2 + N), dtype=np.int64)
        tracks[:, 0] = anchor
        if self.concept == "track":
            tracks[:, 1] = anchor
            starts[:, 0], starts[:, 1] = self._track_pair_starts(rng, anchor)
        else:
            for i in range(B):
                cands = self._positives[int(a_label[i])]
                pick = cands[rng.integers(len(cands))]
                while pick == anchor[i]:
                    pick = cands[rng.integers(len(cands))]
                tracks[i, 1] = pick
            starts[:, :2] = self._random_starts(rng, tracks[:, :2])
        neg = self.negative_pool[rng.integers(len(self.negative_pool), size=(B, N))]
        bad = self._bad_negatives(neg, a_label)
        while bad.any():  # rejection: a negative never shares the anchor's label (nor repeats a song)
            neg[bad] = self.negative_pool[rng.integers(len(self.negative_pool), size=int(bad.sum()))]
            bad = self._bad_negatives(neg, a_label)
        tracks[:, 2:] = neg
        starts[:, 2:] = self._random_starts(rng, neg)
        return tracks, starts

    def anchor_labels(self, tracks: np.ndarray) -> np.ndarray:
        """int64 [B]: the label index of each row's anchor in :meth:`draw`'s ``tracks`` (the song itself for track)."""
        return self._label[tracks[:, 0]]

    def _bad_negatives(self, neg: np.ndarray, a_label: np.ndarray) -> np.ndarray:
        """[B, N] mask of negatives to redraw: the anchor's label, or (distinct) a song already in the row."""
        bad = self._label[neg] == a_label[:, None]
        if self.distinct_negatives:
            for j in range(1, neg.shape[1]):
                bad[:, j] |= (neg[:, :j] == neg[:, j : j + 1]).any(axis=1)
        return bad

    def _n_mels(self) -> int:
        if not hasattr(self, "_mels"):
            self._mels = int(self.store.crop(self.track_ids[0], rng=np.random.default_rng(0), start=0,
                                              length=self.segment_frames).shape[-1])
        return self._mels


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """Everything needed to rebuild a sampler in another process (picklable)."""

    store_path: str
    split: Split
    concept: str
    mode: str
    negatives: int
    segment_frames: int = SEGMENT_FRAMES
    distinct_negatives: bool = True

    def build(self, store: FeatureStore | None = None) -> ConceptSampler:
        """The sampler, reading ``store`` or (None) the store at ``store_path``."""
        if store is None:
            store = open_store(self.store_path)
        return ConceptSampler(store=store, split=self.split, concept=self.concept, mode=self.mode,
                              negatives=self.negatives, segment_frames=self.segment_frames,
                              distinct_negatives=self.distinct_negatives)


def make_batches(
    samplers: dict[str, ConceptSampler], *, batch_size: int, seed: int, rank: int, step: int
) -> dict[str, np.ndarray]:
    """One batch per concept for ``step``: concept -> float32 [B, 2 + N, T, n_mels]."""
    return {
        c: s.sample(batch_size=batch_size, rng=batch_rng(seed=seed, rank=rank, concept=c, mode=s.mode, step=step)).segments
        for c, s in samplers.items()
    }


def batch_labels(
    samplers: dict[str, ConceptSampler], *, batch_size: int, seed: int, rank: int, step: int
) -> dict[str, np.ndarray]:
    """The anchors' labels of :func:`make_batches`' batch for ``step``: concept -> int64 [B].

    The same draw again, without reading a crop (a few microseconds), so the
    batches' format and every loader (thread, worker processes, device-resident)
    stay as they are; in-batch negatives need only these labels.
    """
    out = {}
    for c, s in samplers.items():
        tracks, _ = s.draw(batch_size=batch_size, rng=batch_rng(seed=seed, rank=rank, concept=c, mode=s.mode, step=step))
        out[c] = s.anchor_labels(tracks)
    return out
