"""The multi-label tagging probe (musicrep.evaluation.tagging): metrics, probe, labels and split, the CLI end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from musicrep.data.catalog import Track
from musicrep.cli import main
from musicrep.config import load_config
from musicrep.errors import ConfigError
from musicrep.errors import EvaluationError
from musicrep.data.store import from_arrays as write_store
from musicrep.evaluation.tag_metrics import average_precision, macro_scores, roc_auc
from musicrep.evaluation.tagging import (
    TaggingConfig,
    TaggingResult,
    tag_matrix,
    tag_probe,
    tagging,
    tagging_split,
)
from test_mtat import make_mtat

FAST = TaggingConfig(seeds=(0, 1))


# --------------------------------------------------------------------------- metrics


def test_a_perfect_predictor_scores_one_and_a_constant_one_half(rng):
    y = rng.integers(0, 2, size=(40, 5))
    y[0], y[1] = 0, 1  # every tag has both classes
    perfect = y + 0.1 * rng.random(y.shape)  # every positive above every negative
    roc, pr, scored = macro_scores(y, scores=perfect)
    assert scored.all() and np.allclose(roc, 1.0) and np.allclose(pr, 1.0)
    roc, pr, _ = macro_scores(y, scores=np.full(y.shape, 0.3))
    assert np.allclose(roc, 0.5)
    assert np.allclose(pr, y.mean(axis=0))  # a constant score's PR-AUC is the prevalence
    roc, _, _ = macro_scores(y, scores=-perfect)
    assert np.allclose(roc, 0.0)


def test_small_cases_by_hand():
    y, s = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.4, 0.1])
    # positive > negative in 3 of the 4 pairs (0.4 < 0.8)
    assert roc_auc(y, scores=s) == pytest.approx(0.75)
    # thresholds 0.9: P 1, R 1/2; 0.8: P 1/2, R 1/2; 0.4: P 2/3, R 1 -> 1/2 * 1 + 1/2 * 2/3
    assert average_precision(y, scores=s) == pytest.approx(5 / 6)
    # a tie between a positive and a negative counts one half, and they pass the threshold together
    y, s = np.array([1, 0, 1]), np.array([0.5, 0.5, 0.2])
    assert roc_auc(y, scores=s) == pytest.approx(0.25)
    assert average_precision(y, scores=s) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_metrics_agree_with_scikit_learn(rng):
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = rng.integers(0, 2, size=(60, 8))
    y[0], y[1] = 0, 1
    s = np.round(rng.normal(size=y.shape) + y, 1)  # rounded: many ties
    roc, pr, _ = macro_scores(y, scores=s)
    assert roc.mean() == pytest.approx(roc_auc_score(y, s, average="macro"), abs=1e-12)
    assert pr.mean() == pytest.approx(average_precision_score(y, s, average="macro"), abs=1e-12)


def test_tags_without_both_classes_are_left_out_and_counted():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    roc, pr, scored = macro_scores(y, scores=np.array([[0.9, 0.1, 0.2], [0.1, 0.3, 0.4], [0.8, 0.2, 0.6]]))
    assert scored.tolist() == [True, False, False]
    assert roc[0] == 1.0 and np.isnan(roc[1:]).all() and np.isnan(pr[1:]).all()
    with pytest.raises(EvaluationError, match="diverged"):
        macro_scores(y, scores=np.full(y.shape, np.nan))
    with pytest.raises(EvaluationError, match="positives and negatives"):
        roc_auc(np.ones(3), scores=np.arange(3.0))
    parts = {"train": np.arange(2), "valid": np.arange(2), "test": np.array([0, 2])}
    with pytest.raises(EvaluationError, match="no tag has both"):  # test songs 0 and 2 carry the same tags
        tag_probe(features=np.eye(3), y=y, parts=parts, tags=["a", "b", "c"], config=FAST)


# --------------------------------------------------------------------------- probe


def _separable(rng, n=240, d=12):
    """Tags 0-2 are linear in features 0-2 (plus noise); tag 3 is a coin flip."""
    x = rng.normal(size=(n, d))
    y = np.stack([(x[:, j] + 0.3 * rng.normal(size=n) > 0.3) for j in range(3)] + [rng.random(n) < 0.3], axis=1)
    parts = {"train": np.arange(0, 160), "valid": np.arange(160, 190), "test": np.arange(190, n)}
    return x, y.astype(np.uint8), parts


def test_the_probe_learns_separable_tags_and_not_random_ones(rng):
    x, y, parts = _separable(rng)
    res = tag_probe(features=x, y=y, parts=parts, tags=["a", "b", "c", "coin"], config=FAST, method="m")
    for tag in "abc":
        assert res.per_tag[tag]["roc_auc"] > 0.9, (tag, res.per_tag[tag])
        assert res.per_tag[tag]["pr_auc"] > 0.8, (tag, res.per_tag[tag])
    assert 0.25 < res.per_tag["coin"]["roc_auc"] < 0.75
    assert res.roc_auc.mean > 0.8 and res.n_trials == 2 and len(res.roc_auc.values) == 2
    assert [c["seed"] for c in res.chosen] == [0, 1]
    assert all(1 <= c["epochs"] <= c["stopped_epoch"] <= FAST.probe_max_epochs for c in res.chosen)
    # the same seeds give the same numbers
    again = tag_probe(features=x, y=y, parts=parts, tags=["a", "b", "c", "coin"], config=FAST, method="m")
    assert again.roc_auc.values == res.roc_auc.values


def test_the_default_probe_matches_the_genre_probe():
    c = TaggingConfig()
    assert (c.standardize, c.probe_lr, c.probe_momentum, c.probe_batch_size, c.probe_patience, len(c.seeds)) == (
        "scalar", 0.01, 0.9, 16, 8, 10)
    assert load_config(TaggingConfig, overrides=["seeds=[3]", "tag_column=labels"]).seeds == (3,)
    with pytest.raises(ConfigError, match="probe"):
        load_config(TaggingConfig, overrides=["probe=adam_grid"])  # no such setting here
    with pytest.raises(ConfigError, match="standardize"):
        TaggingConfig(standardize="minmax")


# --------------------------------------------------------------------------- labels, split, whole test


def _tracks(n=36):
    parts = ["train"] * 24 + ["valid"] * 4 + ["test"] * 8
    return [Track(track_id=f"s{i}", path=f"/x/s{i}.wav",
                  extra={"tags": ";".join(t for t, on in (("loud", i % 2), ("low", i % 3 == 0)) if on),
                         "split": parts[i]}) for i in range(n)]


def test_tag_matrix_and_the_datasets_split():
    tracks = _tracks()
    ids = [t.track_id for t in tracks]
    tags, y = tag_matrix(tracks, track_ids=ids)
    assert tags == ["loud", "low"]  # 18 and 12 songs
    assert y.shape == (36, 2) and y[1].tolist() == [1, 0] and y[3].tolist() == [1, 1] and y[2].tolist() == [0, 0]
    parts = tagging_split(tracks, track_ids=ids)
    assert {p: len(r) for p, r in parts.items()} == {"train": 24, "valid": 4, "test": 8}
    no_valid = [dataclasses.replace(t, extra={**t.extra, "split": "train" if t.extra["split"] == "valid" else
                                              t.extra["split"]}) for t in tracks]
    with pytest.raises(EvaluationError, match="no valid songs"):
        tagging_split(no_valid, track_ids=ids)
    untagged = [dataclasses.replace(t, extra={"split": "train"}) for t in tracks]
    with pytest.raises(EvaluationError, match="empty on all 36 songs"):
        tag_matrix(untagged, track_ids=ids)


def test_tagging_on_a_store_whose_tags_are_audible(tmp_path):
    """Loud songs have louder frames; low songs a loud low band: a random encoder already separates them."""
    rng = np.random.default_rng(0)
    tracks = _tracks()
    frames = []
    for i, t in enumerate(tracks):
        f = rng.normal(size=(140, 128)).astype(np.float32) * 0.2 + 1.0
        f += 1.5 * (i % 2)
        f[:, :20] += 2.0 * (i % 3 == 0)
        frames.append(f)
    store = write_store(tmp_path / "tagged", tracks=tracks, frames=frames)
    torch.manual_seed(0)
    from musicrep.training.model import Encoder

    res = tagging({"enc": Encoder(width=4)}, store=store, config=FAST, dataset="toy")
    assert res.tags == ["loud", "low"] and res.skipped_tags == [] and res.counts == {"train": 24, "valid": 4, "test": 8}
    assert res.prevalence == pytest.approx((4 / 8 + 2 / 8) / 2)  # test songs s28..s35
    assert res.methods["enc"].roc_auc.mean > 0.8
    again = TaggingResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again.methods["enc"].pr_auc.values == res.methods["enc"].pr_auc.values and again.tags == res.tags
    table = res.table()
    assert table.splitlines()[0].startswith("toy: tags, 2 tags scored; train 24, valid 4, test 8")
    assert "ROC-AUC (macro)" in table and res.methods["enc"].roc_auc.cell() in table and "0.375" in table


# --------------------------------------------------------------------------- CLI


def _run_folder(root, *, train_ids):
    """A finished run folder by hand (an untrained encoder) whose split trains on ``train_ids``."""
    from musicrep.training.checkpoint import save_checkpoint
    from musicrep.config import FeatureConfig, to_dict
    from musicrep.training.model import Encoder
    from musicrep.data.splits import Split

    root.mkdir(parents=True)
    torch.manual_seed(0)
    enc = Encoder(width=4)
    save_checkpoint({"model": enc.state_dict(), "model_config": dataclasses.asdict(enc.model_config),
                     "feature_config": to_dict(FeatureConfig()), "concept": "artist", "config": {}}, path=root / "best.pt")
    (root / "config.yaml").write_text("concept: artist\n")
    rows = tuple((t, "artist", "train") for t in train_ids) + (("held-out", "artist", "test"),)
    Split(concept="artist", rows=rows).write_csv(root / "split" / "artist.csv")
    (root / "DONE").write_text("done\n")
    return root


def test_cli_catalog_then_evaluate_tagging_end_to_end(tmp_path, capsys):
    root = make_mtat(tmp_path / "MTAT", seconds=3.2)  # one 129-frame segment per clip
    catalog = tmp_path / "mtat.csv"
    assert main(["-q", "catalog", "mtat", str(root), "--top", "3", "-o", str(catalog)]) == 0
    capsys.readouterr()
    run = _run_folder(tmp_path / "runs" / "artist", train_ids=["1", "2"])
    out = tmp_path / "tagging.json"
    assert main(["-q", "evaluate", "tagging", "--run", str(run), "--catalog", str(catalog), "--name", "mtat",
                 "--set", "seeds=[0]", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("mtat: tags, 3 tags scored; train 6, valid 1, test 4")
    assert "artist" in printed and "[one trial]" in printed
    assert any(line.startswith(f"WARNING: {run}: 2 of 11") for line in printed.splitlines())  # it trained on 2 clips
    data = json.loads(out.read_text())
    assert data["tags"] == ["guitar", "classical", "slow"] and set(data["methods"]["artist"]["per_tag"]) == set(data["tags"])
    assert 0.0 <= data["methods"]["artist"]["roc_auc"]["mean"] <= 1.0
    # the prepared store keeps the tags: --store alone gives the same test
    store = catalog.with_suffix(".store")
    assert main(["-q", "evaluate", "tagging", "--run", str(run), "--store", str(store), "--set", "seeds=[0]"]) == 0
    assert "3 tags scored; train 6, valid 1, test 4" in capsys.readouterr().out
    assert main(["-q", "evaluate", "tagging", "--run", str(run)]) == 2
    assert "give --catalog" in capsys.readouterr().err
