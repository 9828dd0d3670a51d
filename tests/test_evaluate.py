"""Hold-out trials (Table 1): construction, determinism, oracle and constant models."""

from __future__ import annotations


import dataclasses
import numpy as np
import pytest
import torch

from musicrep.data.catalog import Track
from musicrep.config import FeatureConfig, to_dict
from musicrep.errors import EvaluationError
from musicrep.evaluation.holdout import (
    holdout,
    holdout_runs,
    trial_scores,
)
from musicrep.evaluation.trials import build_trials, load_split
from musicrep.data.splits import (
    album_split,
    artist_split,
    held_out_overlap,
    make_splits,
    write_splits,
)
from musicrep.data.store import from_arrays as write_store

SEG = 129
N_ART, N_ALB, N_SONG = 5, 2, 4  # 5 artists x 2 albums x 4 songs = 8 songs per artist


def coded_store(path, *, n_frames=400):
    """Channel 0 of every frame holds the track's index, channel 1 the frame's position."""
    tracks, frames = [], []
    for a in range(N_ART):
        for b in range(N_ALB):
            for s in range(N_SONG):
                i = len(tracks)
                tracks.append(Track(track_id=f"t{i:03d}", path=f"/x/{i}.wav", artist=f"A{a}",
                                    album=f"A{a}-B{b}", genre=f"g{a % 2}"))
                f = np.zeros((n_frames + 7 * (i % 3), 128), dtype=np.float32)
                f[:, 0] = i
                f[:, 1] = np.arange(len(f)) / 64.0  # exact in float16 up to 2048 / 64
                frames.append(f)
    return write_store(path, tracks=tracks, frames=frames), tracks


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    store, tracks = coded_store(tmp_path_factory.mktemp("ev") / "store")
    split = {
        "artist": artist_split(catalog=store.catalog, songs_per_artist=8, n_valid=2, n_test=2, seed=3),
        "album": album_split(catalog=store.catalog, songs_per_album=4, n_valid=1, n_test=1, seed=3),
    }
    return store, tracks, split


def label_model(tracks, concept):
    """A "model" that returns the one-hot of the crop's concept label."""
    names = sorted({getattr(t, concept) if concept != "track" else t.track_id for t in tracks})
    code = [names.index(getattr(t, concept) if concept != "track" else t.track_id) for t in tracks]

    def embed(crops):
        idx = np.rint(crops[:, 0, 0]).astype(int)
        return np.eye(len(names), dtype=np.float32)[[code[i] for i in idx]]

    return embed


def track_of(item):
    return int(item[0][1:])


def test_trials_come_from_the_right_split_and_concept(setup):
    store, tracks, split = setup
    for concept in ("artist", "album"):
        parts = {t: p for t, _l, p in split[concept].rows}
        trials = build_trials(store=store, split=split, concept=concept, n_trials=200, n_negatives=4, seed=1)
        assert len(trials) == 200
        for tr in trials:
            anchor = tracks[track_of(tr.anchor)]
            pos = tracks[track_of(tr.positive)]
            assert parts[anchor.track_id] == "test"
            assert parts[pos.track_id] == "valid"
            assert getattr(pos, concept) == getattr(anchor, concept)
            negs = [tracks[track_of(n)] for n in tr.negatives]
            assert len({n.track_id for n in negs}) == 4  # distinct songs
            for n in negs:
                assert parts[n.track_id] == "test"
                assert getattr(n, concept) != getattr(anchor, concept)
            for tid, start in (tr.anchor, tr.positive, *tr.negatives):
                assert 0 <= start <= store.n_frames(tid) - SEG
        # every eligible test song serves as an anchor
        assert {tr.anchor[0] for tr in trials} == {t for t, p in parts.items() if p == "test"}


def test_track_trials_use_another_part_of_the_anchor_song(setup):
    store, _tracks, split = setup
    parts = {t: p for t, _l, p in split["artist"].rows}
    trials = build_trials(store=store, split=split, concept="track", n_trials=300, n_negatives=4, seed=2)
    for tr in trials:
        assert tr.positive[0] == tr.anchor[0]
        assert abs(tr.positive[1] - tr.anchor[1]) >= SEG  # non-overlapping
        assert parts[tr.anchor[0]] == "test"
        assert all(parts[n] == "test" and n != tr.anchor[0] for n, _s in tr.negatives)
    # the crops really are the frames at those starts
    tr = trials[0]
    crop = store.crop(tr.positive[0], start=tr.positive[1])
    assert crop[0, 1] == pytest.approx(tr.positive[1] / 64.0)


def test_trials_are_fixed_by_split_and_seed(setup):
    store, _tracks, split = setup
    a = build_trials(store=store, split=split, concept="artist", n_trials=50, seed=7)
    b = build_trials(store=store, split=split, concept="artist", n_trials=50, seed=7)
    c = build_trials(store=store, split=split, concept="artist", n_trials=50, seed=8)
    assert a == b
    assert a != c


@pytest.mark.parametrize("n_neg", [1, 4])
def test_label_oracle_scores_100_and_constant_scores_chance(setup, n_neg):
    store, tracks, split = setup
    models = {c: label_model(tracks, c) for c in ("artist", "album", "track")}
    models["constant"] = lambda crops: np.ones((len(crops), 8), dtype=np.float32)
    res = holdout(models, store=store, split=split, n_trials=120, n_negatives=n_neg, seed=0)
    for c in ("artist", "album", "track"):
        assert res.accuracy[c][c] == 1.0
        assert res.accuracy["constant"][c] == pytest.approx(1 / (n_neg + 1))
    assert res.chance == pytest.approx(1 / (n_neg + 1))
    # an artist oracle cannot tell two parts of one song from another song of the artist
    assert res.accuracy["artist"]["track"] < 1.0
    assert "constant" in res.table() and "chance" in res.table()


def test_encoder_is_scored_and_mapping_split_accepted(setup):
    store, _tracks, split = setup
    torch.manual_seed(0)
    from musicrep.training.model import Encoder

    as_map = {k: {t: p for t, _l, p in v.rows} for k, v in split.items()}
    res = holdout({"enc": Encoder(width=4)}, store=store, split=as_map, n_trials=40, concepts=("artist",))
    assert res.concepts == ["artist"]
    assert 0.0 <= res.accuracy["enc"]["artist"] <= 1.0


def test_trial_scores_ties_and_wins():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    p = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    n = np.array([[[0.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    assert trial_scores(a, positive=p, negatives=n).tolist() == [1.0, 0.0, 0.5]


def test_too_few_songs_for_negatives_is_a_clear_error(setup):
    store, _tracks, split = setup
    with pytest.raises(EvaluationError, match="negatives"):
        build_trials(store=store, split=split, concept="artist", n_trials=5, n_negatives=9)


def test_holdout_runs_reads_checkpoints_and_saved_splits(setup, tmp_path):
    from musicrep.training.checkpoint import save_checkpoint
    from musicrep.training.model import Encoder

    store, _tracks, _leaky = setup
    split = make_splits(catalog=store.catalog, songs_per_artist=8, artist_valid=2, artist_test=2,
                        songs_per_album=4, album_valid=1, album_test=1, seed=3)
    runs = []
    for concept, splits in (("artist", {"artist": split["artist"]}), ("joint", split)):
        run = tmp_path / concept
        torch.manual_seed(1)
        enc = Encoder(width=4)
        save_checkpoint({"model": enc.state_dict(), "model_config": dataclasses.asdict(enc.model_config),
                         "feature_config": to_dict(FeatureConfig()), "concept": concept, "config": {}}, path=run / "best.pt")
        write_splits(splits, folder=run / "split")
        runs.append(run)
    assert set(load_split(runs[1])) == {"artist", "album", "track"}
    res = holdout_runs(runs, store=store, n_trials=30)
    assert res.models == ["artist", "joint"]
    assert res.concepts == ["artist", "album", "track"]  # the album split comes from the joint run
    # the same weights give the same scores on the same trials
    assert res.accuracy["artist"] == res.accuracy["joint"]
    assert res.n_songs["artist"] == 10 and res.n_labels["artist"] == N_ART  # 5 artists x 2 test songs
    assert any("rest on 10 test songs of 5 artists" in w for w in res.warnings)
    for c in res.concepts:
        low, high = res.interval["artist"][c]
        assert low <= res.accuracy["artist"][c] <= high and high - low > 0


def test_holdout_refuses_runs_whose_splits_leak_into_each_other(setup, tmp_path, capsys):
    """Independently drawn artist and album splits put artist-test songs into album training."""
    from musicrep.training.checkpoint import save_checkpoint
    from musicrep.training.model import Encoder

    store, _tracks, leaky = setup
    assert held_out_overlap(leaky)
    runs = []
    for concept, splits in (("artist", {"artist": leaky["artist"]}), ("album", {"album": leaky["album"]})):
        run = tmp_path / concept
        enc = Encoder(width=4)
        save_checkpoint({"model": enc.state_dict(), "model_config": dataclasses.asdict(enc.model_config),
                         "feature_config": to_dict(FeatureConfig()), "concept": concept, "config": {}}, path=run / "best.pt")
        write_splits(splits, folder=run / "split")
        runs.append(run)
    with pytest.raises(EvaluationError, match=r"album: \d+ of its training songs are artist-split valid/test") as err:
        holdout_runs(runs, store=store, n_trials=30)
    assert "--allow-overlap" in str(err.value)
    res = holdout_runs(runs, store=store, n_trials=30, allow_overlap=True)
    assert any(w.startswith("scored despite overlap") for w in res.warnings)
    assert "WARNING: scored despite overlap" in res.table()
    # the command line: refused with the overlap named, then scored with the flag
    from musicrep.cli import main

    argv = ["-q", "evaluate", "holdout", *map(str, runs), "--store", str(store.path), "--trials", "30"]
    assert main(argv) == 2
    assert "training songs are artist-split valid/test songs" in capsys.readouterr().err
    assert main(argv + ["--allow-overlap"]) == 0
    assert "WARNING: scored despite overlap" in capsys.readouterr().out


def test_song_bootstrap_is_wide_when_few_songs_carry_many_trials():
    from musicrep.evaluation.holdout import song_bootstrap

    # 1,000 trials, but only 4 songs: two always right, two always wrong
    credit = np.repeat([1.0, 1.0, 0.0, 0.0], 250)
    songs = np.repeat(["a", "b", "c", "d"], 250)
    sd, low, high = song_bootstrap(credit, songs=songs, seed=0)
    binomial = (0.5 * 0.5 / 1000) ** 0.5  # what treating trials as independent would say: 0.016
    assert sd > 10 * binomial and low <= 0.25 and high >= 0.75
    # many songs, each with one trial: close to the binomial error
    credit = np.random.default_rng(0).integers(0, 2, 1000).astype(float)
    sd, _low, _high = song_bootstrap(credit, songs=[f"s{i}" for i in range(1000)], seed=0)
    assert abs(sd - binomial) < 0.004


def test_a_concept_the_collection_cannot_test_is_skipped_with_its_reason(setup):
    store, tracks, split = setup
    # 5 artists x 2 test songs: 8 songs of other artists, so 9 negatives is impossible;
    # 10 albums x 1 test song (and 10 test songs for track) leave 9 others: enough
    res = holdout({"m": label_model(tracks, "album")}, store=store, split=split, n_trials=20, n_negatives=9)
    assert res.concepts == ["album", "track"]
    assert set(res.skipped) == {"artist"} and "negatives" in res.skipped["artist"]
    assert res.accuracy["m"]["album"] == 1.0
    assert "artist: not evaluated" in res.table()
