"""Artist and album splits: counts, seeding, eligibility, errors and round trips."""

from __future__ import annotations

from collections import Counter

import pytest

from musicrep.catalog import Catalog, Track
from musicrep.errors import SplitError
from musicrep.splits import Split, album_split, artist_split, load_splits, track_split, write_splits


def _catalog(n_artists=5, songs=12, albums_per_artist=2, unknown=7) -> Catalog:
    tracks = []
    for a in range(n_artists):
        for s in range(songs + a):  # artists have 12, 13, ... songs
            tracks.append(Track(f"a{a}-s{s}", f"/x/{a}/{s}.wav", artist=f"Artist {a}", album=f"Album {a}-{s % albums_per_artist}"))
    tracks += [Track(f"u{s}", f"/x/u/{s}.wav", artist="", album="Unknown Album") for s in range(unknown)]
    tracks += [Track("tiny", "/x/t.wav", artist="Tiny", album="")]
    return Catalog(tracks)


def test_artist_split_counts_and_proportions():
    split = artist_split(catalog=_catalog(), n_artists=3, songs_per_artist=10, n_valid=2, n_test=1, seed=1)
    labels = split.labels()
    assert len({labels[t] for t in labels}) == 3
    per = Counter((label, s) for _, label, s in split.rows)
    for artist in {label for _, label, _ in split.rows}:
        assert (per[(artist, "train")], per[(artist, "valid")], per[(artist, "test")]) == (7, 2, 1)
    assert len(set(labels)) == len(split.rows) == 30  # no song twice
    assert not any(t.startswith("u") for t in labels)  # empty artist: not eligible


def test_split_is_seeded():
    cat = _catalog()
    a = artist_split(catalog=cat, n_artists=3, songs_per_artist=10, seed=5)
    b = artist_split(catalog=cat, n_artists=3, songs_per_artist=10, seed=5)
    c = artist_split(catalog=cat, n_artists=3, songs_per_artist=10, seed=6)
    assert a == b
    assert a.rows != c.rows


def test_too_small_collection_says_how_many_qualify():
    with pytest.raises(SplitError, match=r"only 2 of 6 artists"):
        artist_split(catalog=_catalog(), n_artists=3, songs_per_artist=15)
    with pytest.raises(SplitError, match="songs per artist"):
        artist_split(catalog=_catalog(), songs_per_artist=4, n_valid=2, n_test=2)


def test_album_split_keeps_tracks_without_artist():
    split = album_split(catalog=_catalog(), n_albums=4, songs_per_album=6, seed=0)
    per = Counter((label, s) for _, label, s in split.rows)
    albums = {label for _, label, _ in split.rows}
    assert len(albums) == 4
    assert all((per[(al, "train")], per[(al, "valid")], per[(al, "test")]) == (4, 1, 1) for al in albums)
    everything = album_split(catalog=_catalog(), songs_per_album=7, seed=0)
    assert "Unknown Album" in {label for _, label, _ in everything.rows}  # 7 songs, empty artist


def test_round_trip(tmp_path):
    cat = _catalog()
    splits = {"artist": artist_split(catalog=cat, songs_per_artist=10), "album": album_split(catalog=cat, songs_per_album=6)}
    write_splits(splits, tmp_path / "split")
    header = (tmp_path / "split" / "artist.csv").read_text().splitlines()[0]
    assert header == "track_id,concept_label,split"
    back = load_splits(tmp_path / "split")
    assert back == splits
    assert back["artist"].track_ids("valid") == splits["artist"].track_ids("valid")
    with pytest.raises(SplitError):
        Split.read_csv(tmp_path / "missing.csv")


def test_track_split_adds_songs_without_artist():
    cat = _catalog(unknown=10)
    artist = artist_split(catalog=cat, songs_per_artist=10, n_valid=2, n_test=2, seed=0)
    track = track_split(catalog=cat, artist=artist, seed=0)
    parts = {t: p for t, _, p in track.rows}
    assert all(parts[t] == p for t, _, p in artist.rows)  # the artist split's parts are kept
    extra = [parts[f"u{i}"] for i in range(10)]
    assert (extra.count("train"), extra.count("valid"), extra.count("test")) == (6, 2, 2)
    assert all(label == t for t, label, _ in track.rows)
