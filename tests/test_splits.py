"""Artist and album splits: counts, seeding, eligibility, errors and round trips."""

from __future__ import annotations

from collections import Counter

import pytest

from musicrep.data.catalog import Catalog, Track
from musicrep.errors import SplitError
from musicrep.data.splits import (
    Split,
    album_split,
    artist_split,
    load_splits,
    track_split,
    write_splits,
)


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
    write_splits(splits, folder=tmp_path / "split")
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


def _crossed_catalog(seed: int = 0) -> Catalog:
    """Artists and albums that overlap: each album holds songs of three artists, and
    songs without an artist sit on the albums too (as on compilations and soundtracks)."""
    rng = __import__("numpy").random.default_rng(seed)
    tracks = []
    for a in range(8):
        for s in range(14):
            tracks.append(Track(f"a{a}-s{s}", f"/x/{a}/{s}.wav", artist=f"Artist {a}", album=f"Album {int(rng.integers(10))}"))
    tracks += [Track(f"u{s}", f"/x/u/{s}.wav", artist="", album=f"Album {s % 10}") for s in range(30)]
    return Catalog(tracks)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_held_out_songs_are_held_out_in_every_concept(seed):
    from musicrep.data.splits import held_out_overlap, make_splits

    cat = _crossed_catalog(seed)
    splits = make_splits(catalog=cat, songs_per_artist=10, artist_valid=2, artist_test=2, songs_per_album=8,
                         album_valid=1, album_test=1, seed=seed)
    assert set(splits) == {"artist", "album", "track"}
    assert held_out_overlap(splits) == {}
    train = {t for s in splits.values() for t, _, p in s.rows if p == "train"}
    held = {t for s in splits.values() for t, _, p in s.rows if p != "train"}
    assert train and held and not train & held
    # the album split still has the paper's counts per album
    per = Counter((label, p) for _, label, p in splits["album"].rows)
    for album in {label for _, label, _ in splits["album"].rows}:
        assert (per[(album, "train")], per[(album, "valid")], per[(album, "test")]) == (6, 1, 1)
    # independent draws (the old way) do leak on this catalog: the check can see it
    leaky = {"artist": splits["artist"],
             "album": album_split(catalog=cat, songs_per_album=8, n_valid=1, n_test=1, seed=seed)}
    assert held_out_overlap(leaky)


def test_single_concept_and_joint_runs_share_their_splits():
    from musicrep.data.splits import make_splits

    cat = _crossed_catalog(0)
    kw = {"songs_per_artist": 10, "songs_per_album": 8, "seed": 3}
    joint = make_splits(catalog=cat, concepts=("artist", "album", "track"), **kw)
    for concept in ("artist", "album", "track"):
        assert make_splits(catalog=cat, concepts=(concept,), **kw) == joint
    # an album-only run on a collection without enough artists still gets its album split
    no_artists = Catalog([Track(t.track_id, t.path, artist="", album=t.album) for t in cat])
    only = make_splits(catalog=no_artists, concepts=("album",), songs_per_album=8, seed=3)
    assert set(only) == {"album"}
    with pytest.raises(SplitError, match="artist"):
        make_splits(catalog=no_artists, concepts=("artist",), seed=3)


def _games_catalog() -> Catalog:
    """Six games (the ``package`` column) of 3 to 8 songs; game g's songs are by two composers."""
    tracks = []
    for g in range(6):
        for s in range(3 + g):
            tracks.append(Track(f"g{g}-s{s}", f"/x/{g}/{s}.wav", artist=f"Composer {g}-{s % 2}", album=f"Game {g}",
                                extra={"package": f"game{g}"}))
    tracks.append(Track("loose", "/x/loose.wav", artist="Composer 0-0", album=""))  # no package: no game
    return Catalog(tracks)


def test_game_subsets_are_seeded_nested_and_whole_games():
    from musicrep.data.splits import game_subset

    cat = _games_catalog()
    games = {n: {t.get("package") for t in game_subset(cat, n_games=n, seed=3)} for n in (1, 3, 6)}
    assert [len(g) for g in games.values()] == [1, 3, 6]
    assert games[1] < games[3] < games[6]  # one seed: a larger subset adds games, it swaps none
    for n in (1, 3):
        kept = game_subset(cat, n_games=n, seed=3)
        assert sorted(t.track_id for t in kept) == sorted(t.track_id for t in cat if t.get("package") in games[n])
        assert kept.track_ids == game_subset(cat, n_games=n, seed=3).track_ids  # the same seed, the same games
    draws = {frozenset(t.get("package") for t in game_subset(cat, n_games=2, seed=s)) for s in range(10)}
    assert len(draws) > 1  # other seeds draw other games
    assert "loose" not in game_subset(cat, n_games=6, seed=0).track_ids
    with pytest.raises(SplitError, match="n_games=7: the catalog has 6 values of 'package'"):
        game_subset(cat, n_games=7)
    with pytest.raises(SplitError, match="is 'label' one of its columns"):
        game_subset(cat, n_games=1, column="label")


def test_a_run_with_n_games_draws_its_splits_from_those_games_only():
    import dataclasses

    from musicrep.data.splits import game_subset
    from musicrep.training.settings import TrainConfig
    from musicrep.training.train import make_run_splits

    cat = _games_catalog()
    config = dataclasses.replace(TrainConfig(concept="track"), n_games=4, seed=1, songs_per_artist=3, artist_valid=1,
                                 artist_test=1, songs_per_album=3, album_valid=1, album_test=1)
    kept = set(game_subset(cat, n_games=4, seed=1).track_ids)
    splits = make_run_splits(catalog=cat, config=config, duplicates=[["g5-s0", "g5-s1"]])
    used = {tid for s in splits.values() for tid, _, _ in s.rows}
    assert used and used <= kept
    assert len(used) < len(cat)
    full = make_run_splits(catalog=cat, config=dataclasses.replace(config, n_games=None))
    assert {tid for s in full.values() for tid, _, _ in s.rows} - kept  # without n_games, the other games too


def test_drop_duplicates_keeps_one_of_each_group_among_the_tracks_the_catalog_holds():
    from musicrep.data.splits import drop_duplicates

    cat = Catalog([Track(t, f"/x/{t}.wav", artist="A") for t in ("b", "c", "d", "e")])
    kept, dropped = drop_duplicates(cat, groups=[["a", "b", "c"], ["d", "e"], ["f", "g"]])
    assert kept.track_ids == ["b", "d"]  # "a" is not in the catalog: "b" stays for its group
    assert dropped == {"c": "b", "e": "d"}
