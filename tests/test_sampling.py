"""Sampling rules per concept and mode, on a fake store whose frames say where they came from.

Column 0 of every frame holds the track's number and column 1 the frame's index,
so a crop tells which song and which window it was cut from.
"""

from __future__ import annotations

import numpy as np
import pytest

from musicrep.data.catalog import Catalog, Track
from musicrep.errors import SplitError
from musicrep.training.loader import batch_stream
from musicrep.training.sampling import (
    ConceptSampler,
    make_batches,
    min_track_gap,
)
from musicrep.data.splits import album_split, artist_split

T = 129


class FakeStore:
    """The FeatureStore API over in-memory arrays."""

    def __init__(self, catalog: Catalog, lengths: dict[str, int]):
        self.catalog = catalog
        self.track_ids = catalog.track_ids
        self.number = {t: i for i, t in enumerate(self.track_ids)}
        self.lengths = lengths

    def n_frames(self, track_id):
        return self.lengths[track_id]

    def frames(self, track_id):
        n = self.lengths[track_id]
        x = np.zeros((n, 128), np.float32)
        x[:, 0] = self.number[track_id]
        x[:, 1] = np.arange(n)
        return x

    def crop(self, track_id, *, rng=None, start=None, length=T):
        if start is None:
            start = int(rng.integers(0, self.lengths[track_id] - length + 1))
        return self.frames(track_id)[start : start + length]


@pytest.fixture(scope="module")
def store():
    tracks, lengths = [], {}
    for a in range(4):
        for s in range(10):
            tid = f"a{a}-s{s}"
            tracks.append(Track(tid, f"/x/{tid}.wav", artist=f"A{a}", album=f"A{a}-B{s // 5}"))
            lengths[tid] = 200 + 37 * s  # the shortest song just fits two half-overlapping windows
    return FakeStore(Catalog(tracks), lengths)


@pytest.fixture(scope="module")
def splits(store):
    return {"artist": artist_split(catalog=store.catalog, songs_per_artist=10, seed=3),
            "album": album_split(catalog=store.catalog, songs_per_album=5, seed=3)}


def _decode(store, batch):
    ids = np.array(store.track_ids)[batch.segments[..., 0, 0].astype(int)]
    starts = batch.segments[..., 0, 1].astype(int)
    return ids, starts


@pytest.mark.parametrize("concept", ["artist", "album"])
@pytest.mark.parametrize("mode", ["train", "valid", "test"])
def test_label_concepts_follow_the_rules(store, splits, concept, mode):
    split = splits[concept]
    sampler = ConceptSampler(store=store, split=split, concept=concept, mode=mode, negatives=4)
    batch = sampler.sample(batch_size=64, rng=np.random.default_rng(0))
    assert batch.anchor.shape == (64, T, 128) and batch.negatives.shape == (64, 4, T, 128)
    assert batch.segments.dtype == np.float32
    ids, starts = _decode(store, batch)
    # The crop is what the sampler says it took.
    assert (ids == np.array(sampler.track_ids)[batch.tracks]).all() and (starts == batch.starts).all()
    labels, which = split.labels(), {t: s for t, _, s in split.rows}
    anchor_set, pos_set, neg_set = {"train": ("train",) * 3, "valid": ("valid", "train", "valid"),
                                    "test": ("test", "valid", "test")}[mode]
    for row in ids:
        a, p, negs = row[0], row[1], row[2:]
        assert which[a] == anchor_set and which[p] == pos_set
        assert labels[p] == labels[a] and p != a
        assert all(which[n] == neg_set and labels[n] != labels[a] for n in negs)


@pytest.mark.parametrize("mode", ["train", "valid", "test"])
def test_track_positive_is_another_window_of_the_anchor(store, splits, mode):
    sampler = ConceptSampler(store=store, split=splits["artist"], concept="track", mode=mode, negatives=3)
    batch = sampler.sample(batch_size=256, rng=np.random.default_rng(1))
    ids, starts = _decode(store, batch)
    which = {t: s for t, _, s in splits["artist"].rows}
    assert (ids[:, 0] == ids[:, 1]).all()
    overlap = T - np.abs(starts[:, 0] - starts[:, 1])
    assert (overlap <= T / 2).all() and (starts[:, 0] != starts[:, 1]).all()
    assert min_track_gap(T) == 65
    assert (ids[:, 2:] != ids[:, :1]).all()  # negatives are other songs
    assert {which[t] for t in ids.ravel()} == {mode}
    # Positives are not always on the same side of the anchor: the pair is random.
    assert (starts[:, 1] > starts[:, 0]).any() and (starts[:, 1] < starts[:, 0]).any()


def test_batches_are_seeded_per_step_and_rank(store, splits):
    s = {"artist": ConceptSampler(store=store, split=splits["artist"], concept="artist", mode="train", negatives=2)}
    one = make_batches(s, batch_size=8, seed=0, rank=0, step=5)["artist"]
    assert np.array_equal(one, make_batches(s, batch_size=8, seed=0, rank=0, step=5)["artist"])
    assert not np.array_equal(one, make_batches(s, batch_size=8, seed=0, rank=1, step=5)["artist"])
    assert not np.array_equal(one, make_batches(s, batch_size=8, seed=0, rank=0, step=6)["artist"])
    # The prefetch thread yields the same sequence as building batches inline.
    stream = batch_stream(samplers=s, batch_size=8, seed=0, start_step=4, prefetch=2)
    got = [next(stream)["artist"] for _ in range(3)]
    stream.close()
    for k, b in enumerate(got):
        assert np.array_equal(b, make_batches(s, batch_size=8, seed=0, rank=0, step=4 + k)["artist"])


def test_unusable_requests_raise(store, splits):
    with pytest.raises(SplitError):
        ConceptSampler(store=store, split=splits["artist"], concept="genre", mode="train", negatives=4)
    tiny = artist_split(catalog=store.catalog, songs_per_artist=3, n_valid=1, n_test=1, seed=0)  # 1 train song
    with pytest.raises(SplitError, match="positive"):
        ConceptSampler(store=store, split=tiny, concept="artist", mode="train", negatives=4)


def test_negatives_are_distinct_songs_unless_asked_otherwise(store, splits):
    s = ConceptSampler(store=store, split=splits["artist"], concept="artist", mode="train", negatives=4)
    saw_repeat = False
    for step in range(20):
        b = s.sample(batch_size=16, rng=np.random.default_rng(step))
        for row in b.tracks[:, 2:]:
            assert len(set(row.tolist())) == len(row)
    loose = ConceptSampler(store=store, split=splits["artist"], concept="artist", mode="train", negatives=4,
                           distinct_negatives=False)
    for step in range(20):
        b = loose.sample(batch_size=16, rng=np.random.default_rng(step))
        saw_repeat |= any(len(set(row.tolist())) < len(row) for row in b.tracks[:, 2:])
    assert saw_repeat  # with replacement, repeats do happen on this small pool
    pool = len(s.negative_pool)
    with pytest.raises(SplitError, match="distinct negatives"):
        ConceptSampler(store=store, split=splits["artist"], concept="artist", mode="train", negatives=pool)
