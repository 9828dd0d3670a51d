"""The report: tables laid out like the paper's, results.json, figures; end to end on synthetic audio."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from musicrep.evaluation.holdout import HoldoutResult
from musicrep.evaluation.maps import EmbeddingMap, embedding_map
from musicrep.report.tables import PUBLISHED, table1, table2, table_sweep
from musicrep.report.write import write_report
from musicrep.evaluation.sweep import SweepPoint, SweepResult
from musicrep.evaluation.probe import ProbeResult
from musicrep.evaluation.transfer import TransferResult


def _probe(method, acc):
    return ProbeResult(method=method, accuracy_mean=acc, accuracy_std=0.01, accuracies=[acc - 0.01, acc + 0.01],
                       classes=["blues", "jazz"], confusion=[[8, 2], [1, 9]])


def _results(tmp_path):
    models = ["joint", "artist", "track", "album"]
    acc = {m: {c: 0.3 + 0.1 * i + 0.01 * j for j, c in enumerate(("artist", "album", "track"))}
           for i, m in enumerate(models)}
    ho = HoldoutResult(models=models, concepts=["artist", "album", "track"], accuracy=acc,
                       stderr={m: {c: 0.01 for c in acc[m]} for m in models}, n_trials=500, n_negatives=4,
                       seed=0, chance=0.2)
    tr = TransferResult(dataset="gtzan-toy", classes=["blues", "jazz"], counts={"train": 60, "valid": 20, "test": 20},
                        split_source="dataset", methods={m: _probe(m, 0.6) for m in ("artist", "joint")}
                        | {b: _probe(b, 0.5) for b in ("genres", "random", "mfcc", "logmel")})
    sw = SweepResult(kind="negatives", dataset="toy", points=[
        SweepPoint(value=v, status="done", run=str(tmp_path / f"r{v}"),
                   transfer={"mean": 0.5 + v / 100, "std": 0.02, "accuracies": [0.5]},
                   holdout={"artist": 0.4 + v / 100, "album": 0.5, "track": 0.8},
                   validation={"valid_acc": 0.3 - (v - 2) ** 2 / 100}) for v in (1, 2, 4)])
    run = tmp_path / "run-joint"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "step", "lr", "train_loss", "valid_loss", "valid_acc", "valid_acc_artist", "seconds"])
        for e in range(1, 6):
            w.writerow([e, 10 * e, 0.1, 1 / e, 1.2 / e, 0.2 + e / 20, 0.2 + e / 25, 1.0])
    return ho, tr, sw, run


def test_tables_are_laid_out_like_the_paper(tmp_path):
    ho, tr, _sw, _run = _results(tmp_path)
    t1 = table1(ho).splitlines()
    assert t1[0] == "| model \\ concept | artist | album | track |"
    assert [r.split("|")[1].strip() for r in t1[2:6]] == ["artist", "album", "track", "joint"]  # the paper's row order
    assert "| chance (random guess) | 0.200 | 0.200 | 0.200 |" in t1
    pub = [r for r in t1 if "published" in r]
    assert len(pub) == 1 and "*0.686*" in pub[0] and "MSD" in pub[0]
    t2 = table2([tr]).splitlines()
    assert t2[0].startswith("| dataset | artist | joint | genres (baseline) | random encoder | MFCC mean/std |")
    assert "0.600 ± 0.010" in t2[2]
    tr.methods["genres"] = dataclasses.replace(tr.methods["genres"], accuracies=[0.5], accuracy_std=0.0)
    assert "0.500 (1 trial)" in table2([tr])  # one trial has no spread to show
    ho.interval = {m: {c: [0.1, 0.9] for c in ho.accuracy[m]} for m in ho.models}
    ho.n_songs, ho.n_labels = {"artist": 12, "album": 10, "track": 12}, {"artist": 6, "album": 10, "track": 12}
    ho.warnings = ["artist: the 500 trials rest on 12 test songs of 6 artists"]
    t1 = table1(ho)
    assert "| joint | 0.300 [0.100, 0.900] |" in t1 and "| test songs (labels) | 12 (6) | 10 (10) | 12 (12) |" in t1
    assert "**Warning:** artist: the 500 trials rest on 12 test songs" in t1
    assert "*0.745*" in t2[3] and "published" in t2[3]  # GTZAN's published joint number, beside ours


def test_write_report_renders_every_part(tmp_path):
    ho, tr, sw, run = _results(tmp_path)
    rng = np.random.default_rng(0)
    labels = {"artist": [f"A{k}" for k in range(3) for _ in range(20)],
              "genre": [("rock", "jazz")[k % 2] for k in range(3) for _ in range(20)]}
    emap = EmbeddingMap(name="joint", xy=np.concatenate([rng.normal(size=(20, 2)) + 4 * k for k in range(3)]),
                        labels=labels)
    path = write_report(tmp_path / "rep", holdout=ho, transfer=tr, sweeps=[sw], runs=[run], maps=[emap])
    text = path.read_text()
    for head in ("## Table 1", "## Table 2", "## Table 3: sweep over negatives", "## Figures"):
        assert head in text
    # negatives change the validation task (chance 1/(N+1)): shown, nothing selected
    assert "|  | 2 | 0.300 | 0.520 ± 0.020 | 0.420 | 0.500 | 0.800 |" in text
    assert "Nothing is selected: negatives N changes the validation task" in text
    # a margin sweep selects: 2 has the best validation accuracy, though 4 scores best on test
    margins = table_sweep(dataclasses.replace(sw, kind="margin_artist", field="margin_artist", concept="artist"))
    assert "| **→** | 2 | 0.300 | 0.520 ± 0.020 | 0.420 | 0.500 | 0.800 |" in margins
    assert "|  | 4 | 0.260 | 0.540 ± 0.020 | 0.440 | 0.500 | 0.800 |" in margins
    assert "Selected by validation accuracy (never by test): margin_artist = 2" in margins
    assert "## Table 2: transfer to genre classification" in text
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert results["holdout"]["accuracy"]["joint"]["artist"] == pytest.approx(0.3)
    assert results["published"] == json.loads(json.dumps(PUBLISHED))
    figs = results["figures"]
    assert {"sweep-negatives", "curves-run-joint", "map-joint-artist", "map-joint-genre"} <= set(figs)
    assert any(k.startswith("confusion-") for k in figs)
    for rel in figs.values():
        png = tmp_path / "rep" / rel
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({rel})" in text


def test_embedding_map_keeps_clusters_apart():
    rng = np.random.default_rng(1)
    vec = np.concatenate([rng.normal(size=(15, 6)) + 10 * k for k in range(2)])
    m = embedding_map(vec, labels={"artist": ["a"] * 15 + ["b"] * 15}, name="x")
    assert isinstance(m, EmbeddingMap) and m.xy.shape == (30, 2)
    a, b = m.xy[:15].mean(0), m.xy[15:].mean(0)
    spread = max(m.xy[:15].std(0).max(), m.xy[15:].std(0).max())
    assert np.linalg.norm(a - b) > 2 * spread


@pytest.fixture(scope="module")
def trained(synth_store, tmp_path_factory):
    """Two tiny runs (artist, joint) trained on the suite's synthetic store (conftest.synth_store)."""
    from musicrep.training.settings import TrainConfig
    from musicrep.training.train import train

    root = tmp_path_factory.mktemp("e2e")
    store = synth_store.path
    base = TrainConfig(width=8, epochs=2, steps_per_epoch=3, batch_size=8, valid_batches=2, songs_per_artist=6,
                       artist_valid=2, artist_test=2, songs_per_album=5, album_valid=1, album_test=1,
                       tensorboard=False, prefetch=0, threads=1)
    runs = []
    for concept in ("artist", "joint"):
        runs.append(train(store, out_dir=root / concept, config=dataclasses.replace(base, concept=concept)))
    return root, store, runs


def test_cli_report_on_a_synthetic_collection(trained, capsys):
    from musicrep.cli import main

    root, store, runs = trained
    out = root / "report"
    fast = ["--transfer-set", "seeds=[0]", "--transfer-set", "probe_epochs=30", "--transfer-set", "cnn_steps=4",
            "--transfer-set", "cnn_eval_every=2", "--transfer-set", "l2_grid=[0.001]", "--transfer-set", "lr_grid=[0.01]"]
    code = main(["-q", "report", *map(str, runs), "-o", str(out), "--transfer", str(store), "--trials", "60",
                 "--map-points", "32", *fast])
    assert code == 0
    text = (out / "report.md").read_text()
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")}
    assert {"artist", "joint", "chance (random guess)"} <= rows
    assert "| model \\ concept | artist | album | track |" in text  # every run on every concept
    assert "genres (baseline)" in text and "random encoder" in text
    assert "hollow rings its held-out (validation and test) songs" in text  # the maps read the run's split
    results = json.loads((out / "results.json").read_text())
    assert results["holdout"]["models"] == ["artist", "joint"]
    assert results["holdout"]["runs"]["joint"] == str(runs[1])
    assert {"curves-artist", "curves-joint", "map-joint on store-artist", "map-joint on store-genre"} <= set(results["figures"])
    for rel in results["figures"].values():
        assert (out / rel).stat().st_size > 1000
    assert "Table 1" in capsys.readouterr().out


def test_cli_evaluate_holdout_and_transfer(trained, capsys, tmp_path):
    from musicrep.cli import main

    _root, store, runs = trained
    assert main(["-q", "evaluate", "holdout", *map(str, runs), "--trials", "40", "--json", str(tmp_path / "h.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["model", "artist", "album", "track"]
    assert json.loads((tmp_path / "h.json").read_text())["n_trials"] == 40
    assert main(["-q", "evaluate", "transfer", "--run", str(runs[1]), "--store", str(store), "--baselines", "mfcc",
                 "--set", "seeds=[0]", "--set", "probe_epochs=20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("joint") and lines[3].startswith("MFCC mean/std")
    assert main(["-q", "evaluate", "holdout", str(tmp_path / "nope"), "--store", str(store)]) == 2


def test_published_numbers_only_beside_the_papers_datasets():
    from musicrep.report.tables import PUBLISHED, _published_transfer

    assert _published_transfer("gtzan") == PUBLISHED["transfer"]["gtzan"]
    assert _published_transfer("GTZAN-fault-filtered") == PUBLISHED["transfer"]["gtzan"]
    assert _published_transfer("fma_small") == _published_transfer("FMA small") == PUBLISHED["transfer"]["fma_small"]
    assert _published_transfer("fma_large") is None and _published_transfer("my_fma_subset") is None
    assert _published_transfer("folk") is None


def _seed_sweep(seed, *, holdout, transfer, failed_value=None):
    points = [SweepPoint(value=v, status="done", run=f"r{seed}-{v}", concept="artist",
                         transfers={"folk": {"mean": transfer[v], "std": 0.01, "accuracies": [transfer[v]]},
                                    "unseen-soundtracks": {"mean": transfer[v] / 2, "std": 0.0, "accuracies": [0.1]}},
                         holdout={"artist": holdout[v]}) for v in holdout]
    if failed_value is not None:
        points.append(SweepPoint(value=failed_value, status="failed", run="x", error="too few artists"))
    return SweepResult(kind="artists", dataset="folk", field="n_artists", concept="artist", seed=seed, points=points)


def test_a_sweep_over_seeds_gives_means_and_intervals_over_the_seeds(tmp_path):
    from musicrep.report.figures import plot_sweep_seeds
    from musicrep.report.tables import sweep_groups, sweep_section

    sweeps = [_seed_sweep(0, holdout={4: 0.5, 8: 0.6}, transfer={4: 0.40, 8: 0.50}),
              _seed_sweep(1, holdout={4: 0.7, 8: 0.6}, transfer={4: 0.42, 8: 0.50}),
              _seed_sweep(2, holdout={4: 0.6, 8: 0.6}, transfer={4: 0.44, 8: 0.50}, failed_value=16)]
    groups = sweep_groups([*sweeps, _results(tmp_path)[2]])
    assert [len(g) for g in groups] == [3, 1]
    text = "\n".join(sweep_section(groups[0]))
    assert "## Table 4: sweep over artists (artist model, 3 seeds)" in text
    # hold-out at 4 artists: 0.5, 0.7, 0.6 -> mean 0.6, std 0.1, half-width t(0.975, 2) * 0.1 / sqrt(3) = 0.248
    assert "| 4 | 3 | 0.600 [0.352, 0.848] | 0.420 [0.370, 0.470] | 0.210 [0.185, 0.235] |" in text
    assert "| 8 | 3 | 0.600 [0.600, 0.600] | 0.500 [0.500, 0.500] | 0.250 [0.250, 0.250] |" in text
    assert "hold-out artist" in text and "transfer (unseen-soundtracks)" in text
    assert "**Failed points:** seed 2, artists = 16: too few artists" in text
    png = plot_sweep_seeds(groups[0], path=tmp_path / "seeds.png")
    assert png.is_file() and png.stat().st_size > 10_000
    report = write_report(tmp_path / "rep", holdout=None, transfer=[], sweeps=sweeps, runs=[], maps=[])
    assert "3 seeds" in report.read_text() and (tmp_path / "rep" / "figures" / "sweep-artists.png").is_file()
