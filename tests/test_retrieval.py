"""Retrieval on held-out songs: AP and P@k by hand, ties, skipped queries, the runner, CLI and report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from musicrep.errors import EvaluationError
from musicrep.evaluation.ranking import average_precision, precision_at_k, retrieval
from musicrep.evaluation.retrieval import RetrievalResult, retrieval_runs

# --------------------------------------------------------------------------- one ranking


def test_average_precision_and_precision_at_k_by_hand():
    scores = np.array([0.9, 0.7, 0.8, 0.1])      # ranking: 0, 2, 1, 3
    relevant = np.array([True, True, False, False])
    # relevant at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    assert average_precision(scores, relevant=relevant) == pytest.approx(5 / 6)
    assert precision_at_k(scores, relevant=relevant, k=2) == pytest.approx(1 / 2)
    assert precision_at_k(scores, relevant=relevant, k=3) == pytest.approx(2 / 3)
    # divided by k even past the end of the list: 2 relevant of 4 candidates, k = 10
    assert precision_at_k(scores, relevant=relevant, k=10) == pytest.approx(2 / 10)
    assert np.isnan(average_precision(scores, relevant=np.zeros(4, bool)))  # nothing to find: not a score


def test_ties_count_as_the_expectation_over_their_orders():
    scores = np.array([0.9, 0.8, 0.8, 0.1])
    relevant = np.array([False, True, False, True])
    # the tie at ranks 2-3 has two orders: relevant at 2 and 4 -> (1/2 + 2/4) / 2 = 1/2,
    # or at 3 and 4 -> (1/3 + 2/4) / 2 = 5/12; expectation 11/24
    assert average_precision(scores, relevant=relevant) == pytest.approx(11 / 24)
    assert precision_at_k(scores, relevant=relevant, k=2) == pytest.approx(1 / 4)  # 1/2 or 0
    # scores closer than atol tie; a stable sort would have given AP 1/2
    nearly = scores + np.array([0, 1e-9, 0, 0])
    assert average_precision(nearly, relevant=relevant) == pytest.approx(11 / 24)
    # all tied, one relevant of 4: its rank is uniform, E[1 / rank] = (1 + 1/2 + 1/3 + 1/4) / 4
    constant, one = np.ones(4), np.array([False, False, True, False])
    assert average_precision(constant, relevant=one) == pytest.approx(25 / 48)
    assert precision_at_k(constant, relevant=one, k=1) == pytest.approx(1 / 4)


# --------------------------------------------------------------------------- a pool


def test_a_perfect_embedding_scores_one_and_p_at_k_reaches_its_ceiling():
    labels = ["a"] * 3 + ["b"] * 12 + ["c"] * 2
    onehot = np.eye(3)[[ord(x) - ord("a") for x in labels]] * np.linspace(1, 5, len(labels))[:, None]
    res = retrieval(onehot, labels=labels, k=10)  # scaled rows: cosine, not the dot product
    assert res.ap == pytest.approx(np.ones(len(labels)))
    # a label with r other songs fills min(r, 10) of the first 10
    assert res.p_at_k == pytest.approx([0.2] * 3 + [1.0] * 12 + [0.1] * 2)
    assert res.n_skipped == 0 and list(res.n_relevant) == [2] * 3 + [11] * 12 + [1] * 2


def test_queries_without_another_song_of_their_label_are_skipped_and_counted():
    labels = ["a", "a", "b", "c", "c", "c", "d"]
    x = np.random.default_rng(0).normal(size=(len(labels), 8))
    res = retrieval(x, labels=labels)
    assert res.n_skipped == 2 and list(res.queries) == [0, 1, 3, 4, 5]
    assert list(res.n_relevant) == [1, 1, 2, 2, 2]
    assert np.all((res.ap > 0) & (res.ap <= 1))
    # a constant space scores chance: the one other "a" among 6 candidates is at a uniform rank
    const = retrieval(np.ones((len(labels), 3)), labels=labels)
    assert const.ap[0] == pytest.approx(sum(1 / r for r in range(1, 7)) / 6)


def test_a_nan_embedding_is_an_error_not_a_low_score():
    x = np.ones((4, 2))
    x[2, 1] = np.nan
    with pytest.raises(EvaluationError, match="song 2 has a NaN"):
        retrieval(x, labels=["a", "a", "b", "b"])


# --------------------------------------------------------------------------- run folders

TRAIN = ["width=8", "negatives=2", "batch_size=4", "steps_per_epoch=2", "valid_batches=1", "epochs=1",
         "songs_per_artist=8", "artist_valid=2", "artist_test=2", "songs_per_album=5", "album_valid=1",
         "album_test=1", "tensorboard=false", "threads=1"]


@pytest.fixture(scope="module")
def runs(synth_store, tmp_path_factory):
    """Tiny trained artist, album and joint runs on the shared synthetic store (one split)."""
    from musicrep.config import load_config
    from musicrep.training.settings import TrainConfig
    from musicrep.training.train import train

    root = tmp_path_factory.mktemp("retrieval-runs")
    out = []
    for concept in ("artist", "album", "joint"):
        out.append(train(synth_store.path, out_dir=root / concept, config=load_config(TrainConfig, path=None, overrides=TRAIN + [f"concept={concept}"])))
    return out


def test_the_runner_measures_every_space_on_the_held_out_songs(runs, synth_store, tmp_path):
    from musicrep.evaluation.trials import load_split

    out = tmp_path / "res" / "retrieval.json"
    res = retrieval_runs(runs, store=synth_store, out=out, baselines=("random", "mfcc"))
    assert res.spaces == ["artist", "album", "joint", "concat (artist+album)", "random encoder", "MFCC mean/std"]
    assert res.kinds["concat (artist+album)"] == "concatenation" and res.runs["concat (artist+album)"] == \
        [str(runs[0]), str(runs[1])]
    split = load_split(runs[2])
    for task, per_label in (("artist", 4), ("album", 2)):
        held = {t for t, _l, p in split[task].rows if p in ("valid", "test")}
        assert res.n_pool[task] == len(held) and res.n_skipped[task] == 0
        assert res.n_queries[task] == len(held) and res.n_labels[task] == len(held) // per_label
        assert res.ceiling[task] == pytest.approx((per_label - 1) / 10)
        for space in res.spaces:
            m = res.metrics[space][task]
            assert m["map_ci"][0] <= m["map"] <= m["map_ci"][1] and 0 < m["map"] <= 1
            assert m["p_at_k"] <= res.ceiling[task] + 1e-12
    # 4 songs per artist, 3 relevant among 23 candidates: chance P@10 = 3/23
    assert res.chance["artist"]["p_at_k"] == pytest.approx(3 / 23)
    assert RetrievalResult.from_dict(json.loads(out.read_text())) == res
    assert not any((r / "embeddings").exists() for r in runs)  # only pool songs embedded; nothing cached


def test_runs_trained_on_pool_songs_are_refused(runs, synth_store, tmp_path):
    import shutil

    from musicrep.data.splits import artist_split

    leaky = tmp_path / "leaky"
    shutil.copytree(runs[0], leaky)
    other = artist_split(catalog=synth_store.catalog, songs_per_artist=8, n_valid=2, n_test=2, seed=7)
    other.write_csv(leaky / "split" / "artist.csv")
    with pytest.raises(EvaluationError, match="trained on songs that the retrieval pools hold out"):
        retrieval_runs([runs[2], leaky], store=synth_store, baselines=())
    res = retrieval_runs([runs[2], leaky], store=synth_store, baselines=(), allow_overlap=True)
    assert any(w.startswith("measured despite overlap") for w in res.warnings)


def test_cli_evaluate_retrieval(runs, tmp_path, capsys):
    from musicrep.cli import main

    out = tmp_path / "r.json"
    assert main(["-q", "evaluate", "retrieval", "--runs", *map(str, runs), "-o", str(out), "--baselines",
                 "--no-concat", "--parts", "test", "--k", "1"]) == 0
    printed = capsys.readouterr().out
    assert "artist P@1" in printed and f"written: {out}" in printed
    data = json.loads(out.read_text())
    assert data["spaces"] == ["artist", "album", "joint"] and data["parts"] == ["test"] and data["k"] == 1
    # 2 test songs per artist; 1 per album: no album query has a relevant song
    assert data["tasks"] == ["artist"] and "album" in data["skipped"]


# --------------------------------------------------------------------------- report


def _result() -> RetrievalResult:
    metric = {"map": 0.7, "map_ci": [0.5, 0.9], "p_at_k": 0.09, "p_at_k_ci": [0.08, 0.1]}
    spaces = ["joint", "artist", "concat (artist+album+track)", "random encoder"]
    return RetrievalResult(
        spaces=spaces, tasks=["artist", "album"], metrics={s: {"artist": metric, "album": metric} for s in spaces},
        k=10, parts=["valid", "test"], seed=0, n_pool={"artist": 12, "album": 22},
        n_queries={"artist": 12, "album": 22}, n_skipped={"artist": 0, "album": 0},
        n_labels={"artist": 6, "album": 11}, chance={t: {"map": 0.2, "p_at_k": 0.05} for t in ("artist", "album")},
        ceiling={"artist": 0.1, "album": 0.1}, warnings=["artist: 12 queries of 6 artists"])


def test_the_report_has_the_retrieval_table_only_when_there_is_a_result(tmp_path):
    from musicrep.report.write import write_report

    text = write_report(tmp_path / "with", retrieval=_result()).read_text()
    assert "## Retrieval: same-artist / same-album songs" in text
    assert "| space | artist mAP | artist P@10 | album mAP | album P@10 |" in text
    rows = [r.split("|")[1].strip() for r in text.splitlines() if r.startswith("| ")]
    assert rows[2:6] == ["artist", "joint", "concat (artist+album+track)", "random encoder"]  # models first
    assert "| joint | 0.700 [0.500, 0.900] | 0.090 [0.080, 0.100] |" in text
    assert "| perfect ranking | 1.000 | 0.100 | 1.000 | 0.100 |" in text
    assert "**Warning:** artist: 12 queries of 6 artists" in text
    assert json.loads((tmp_path / "with" / "results.json").read_text())["retrieval"]["k"] == 10
    text = write_report(tmp_path / "without").read_text()
    assert "Retrieval" not in text and json.loads((tmp_path / "without" / "results.json").read_text())["retrieval"] is None


def test_the_main_jobs_report_stage_renders_retrieval_json_when_it_exists(tmp_path):
    from musicrep.evaluation.holdout import HoldoutResult
    from musicrep.pipeline import Stages, _report, profile_config

    results = tmp_path / "results"
    results.mkdir()
    ho = HoldoutResult(models=["joint"], concepts=["artist"], accuracy={"joint": {"artist": 0.5}},
                       stderr={"joint": {"artist": 0.1}}, n_trials=10, n_negatives=4, seed=0, chance=0.2)
    (results / "holdout.json").write_text(json.dumps(ho.to_dict()))
    (results / "maps.json").write_text("[]")
    args = dict(runs=[], results=results, transfer_jsons=[], sweeps=[], config=profile_config("quick"),
                stages=Stages(tmp_path))
    _report(report_dir=tmp_path / "r1", **args)
    assert "Retrieval" not in (tmp_path / "r1" / "report.md").read_text()
    (results / "retrieval.json").write_text(json.dumps(dataclasses.asdict(_result())))
    _report(report_dir=tmp_path / "r2", **args)
    assert "| joint | 0.700 [0.500, 0.900] |" in (tmp_path / "r2" / "report.md").read_text()
