"""The shipped model: packaged from a finished run with its card, checksum-checked on load."""

from __future__ import annotations

import json

import pytest
import torch

from musicrep.training.checkpoint import load_encoder, read_checkpoint
from musicrep.config import load_config
from musicrep.errors import CheckpointError
from musicrep.inference.pretrained import (
    CARD_JSON,
    CARD_MD,
    MODEL_FILE,
    package_model,
    sha256,
    shipped_model,
)
from musicrep.training.settings import TrainConfig
from musicrep.training.train import train

TINY = ["concept=joint", "width=8", "negatives=1", "batch_size=4", "steps_per_epoch=2", "epochs=1",
        "valid_batches=1", "songs_per_artist=10", "songs_per_album=5", "tensorboard=false", "threads=1"]


@pytest.fixture(scope="module")
def run(synth_store, tmp_path_factory):
    return train(synth_store.path, out_dir=tmp_path_factory.mktemp("run") / "joint", config=load_config(TrainConfig, path=None, overrides=TINY))


def test_the_shipped_model_matches_its_card_and_loads_safely():
    path = shipped_model()  # raises when the file or the card is missing or the checksum differs
    card = json.loads((path.parent / CARD_JSON).read_text())
    assert card["sha256"] == sha256(path) and card["concept"] == "joint"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert "optimizer" not in payload and "rng" not in payload  # weights and settings only
    encoder, info = load_encoder(path)
    assert encoder.width == card["model_config"]["width"] and info.concept == "joint"
    assert set(card["holdout"]) == {"artist", "album", "track"}  # the numbers the main job measured
    assert (path.parent / CARD_MD).read_text().startswith("# musicrep shipped model")


def test_package_model_strips_the_run_and_writes_the_card(run, tmp_path):
    holdout = {"concepts": ["artist"], "accuracy": {"joint": {"artist": 0.5}}, "interval": {"joint": {"artist": [0.4, 0.6]}}}
    path = package_model(run_dir=run, out_dir=tmp_path, holdout=holdout, corpus={"tracks": 60, "artists": {"a": 1}})
    assert path == tmp_path / MODEL_FILE and shipped_model(folder=tmp_path) == path
    best = read_checkpoint(run / "best.pt")
    packed = read_checkpoint(path)
    assert all(torch.equal(packed["model"][k], v) for k, v in best["model"].items())
    card = json.loads((tmp_path / CARD_JSON).read_text())
    assert card["holdout"] == {"artist": {"accuracy": 0.5, "interval": [0.4, 0.6]}}
    assert card["training_data"] == {"tracks": 60, "artists": 1}
    assert "| artist | 0.500 | [0.400, 0.600] |" in (tmp_path / CARD_MD).read_text()


def test_a_changed_or_missing_shipped_file_is_refused(run, tmp_path):
    with pytest.raises(CheckpointError, match="no shipped model"):
        shipped_model(folder=tmp_path)
    path = package_model(run_dir=run, out_dir=tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        shipped_model(folder=tmp_path)


def test_an_unfinished_run_is_not_packaged(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "DONE").unlink()
    with pytest.raises(CheckpointError, match="did not finish"):
        package_model(run_dir=copy, out_dir=tmp_path / "out")


def test_the_main_job_describes_the_catalog_the_model_trained_on_not_the_whole_corpus(run, tmp_path):
    """With unseen games held out, the card counts the training catalog (their tracks and licences are not in it)."""
    import shutil

    from musicrep.data.catalog import Catalog, Track
    from musicrep.data.corpus.unseen import write_unseen
    from musicrep.pipeline import _package_model, profile_config

    work = tmp_path / "work"
    corpus = work / "corpus" / "games"
    rows = [Track(track_id=f"{p}-{k}", path=f"audio/{p}-{k}.flac", artist=a, album=p, duration=60.0,
                  extra={"package": p, "license": lic})
            for p, a, lic, n in (("kept-a", "A", "GPL-2+", 3), ("kept-b", "B", "GPL-2+", 2),
                                 ("gone-1", "", "Drascula-License", 4), ("gone-2", "", "CC-BY-3.0", 2))
            for k in range(n)]
    corpus.mkdir(parents=True)
    Catalog(rows).write_csv(corpus / "catalog.csv")
    write_unseen(corpus, packages=["gone-1", "gone-2"])
    shutil.copytree(run, work / "runs" / "joint")
    config = profile_config("quick", overrides=("train_corpus=games", "unseen_games=[gone-1,gone-2]"))
    _package_model(work, work / "results" / "holdout.json", work / "results" / "transfer.json", config)
    card = json.loads((work / "model" / CARD_JSON).read_text())
    assert card["training_data"]["tracks"] == 5 and card["training_data"]["packages"] == 2
    assert card["licenses"] == {"GPL-2+": 5}
    assert card["corpus"] == "games" and "the built-in `games` corpus" in (work / "model" / "MODEL_CARD.md").read_text()
