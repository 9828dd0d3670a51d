"""`musicrep run --profile paper` end to end on the user's data: MSD to train, GTZAN and
FMA small to transfer, each in its own layout (built here), with the paper's counts
scaled down by settings only."""

from __future__ import annotations

import json
import logging

import pytest
import soundfile as sf

from musicrep.cli import main
from musicrep.errors import ConfigError
from musicrep.pipeline import profile_config
from musicrep.testing import synth_song
from test_datasets import MSD_SCHEMA, fma_row, make_msd_db, write_fma_tracks_csv

SR = 22050


def _song(path, *, artist: int, album: int, song: int, seconds: float = 5.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    y = synth_song(artist=artist, album=album, song=song, seconds=seconds, sr=SR)
    sf.write(str(path), y, SR, format="MP3" if path.suffix == ".mp3" else "WAV")
    return path


def _msd(root):
    """track_metadata.db and audio named by MSD track id, in MSD's A/B/C folders:
    8 artists x 2 releases x 5 songs of 7 s (two non-overlapping segments each)."""
    rows = []
    for a in range(8):
        for b in range(2):
            for s in range(5):
                tid = f"TR{a:02d}{b:02d}{s:02d}" + "A" * 10
                rows.append((tid, f"Song {a}-{b}-{s}", f"SO{tid[2:]}", f"Release {a}-{b}", f"AR{a:016d}", "",
                             f"Artist {a}", 7.0, 0.5, 0.4, 2000, 1, -1, 0))
                _song(root / "audio" / tid[2] / tid[3] / tid[4] / f"{tid}.wav", artist=a, album=b, song=s,
                      seconds=7.0)
    return make_msd_db(root / "track_metadata.db", rows, MSD_SCHEMA), root / "audio"


def _gtzan(root):
    """genres/<genre>/<genre>.000NN.wav and the fault-filtered split lists."""
    lists = {"train": [], "valid": [], "test": []}
    for g, genre in enumerate(("blues", "jazz", "rock")):
        for i in range(8):
            _song(root / "genres" / genre / f"{genre}.{i:05d}.wav", artist=10 + g, album=i % 2, song=i, seconds=4.0)
            lists["train" if i < 5 else "valid" if i < 6 else "test"].append(f"{genre}/{genre}.{i:05d}.wav")
    (root / "splits").mkdir()
    for part, names in lists.items():
        (root / "splits" / f"{part}_filtered.txt").write_text("\n".join(names) + "\n")
    return root, root / "splits"


def _fma(root):
    """fma_metadata/tracks.csv (FMA's three header lines) and fma_small/NNN/NNNNNN.mp3."""
    rows, k = [], 0
    for g, genre in enumerate(("Hip-Hop", "Pop", "Folk")):
        for i in range(8):
            k += 1
            split = "training" if i < 5 else "validation" if i < 6 else "test"
            rows.append(fma_row(k, f"FMA artist {g}-{i % 3}", f"FMA album {g}", f"t{k}", genre, "small", split,
                                album_id=g, artist_id=10 * g + i % 3, duration=4))
            _song(root / "fma_small" / f"{k:06d}"[:3] / f"{k:06d}.mp3", artist=20 + g, album=0, song=i, seconds=4.0)
    return write_fma_tracks_csv(root / "fma_metadata" / "tracks.csv", rows), root / "fma_small"


def test_the_paper_profile_needs_the_users_catalogs(tmp_path):
    with pytest.raises(ConfigError, match="--train-catalog"):
        profile_config("paper")
    (tmp_path / "msd.csv").write_text("track_id,path\n")
    with pytest.raises(ConfigError, match="--transfer-catalog"):
        profile_config("paper", overrides=(f"train_catalog={tmp_path / 'msd.csv'}",))
    config = profile_config("paper", overrides=(f"train_catalog={tmp_path / 'msd.csv'}",
                                                f"transfer_catalogs=[{json.dumps(str(tmp_path / 'msd.csv'))}]"))
    assert config.train == {"n_artists": 5000, "n_albums": 10000}  # the rest: TrainConfig's defaults, the paper's
    assert config.sweep_negatives == (1, 2, 4, 8, 16) and config.sweep_negatives_artists == 1000
    assert config.sweep_artists == (500, 1000, 2000, 5000, 10000)


@pytest.mark.slow
def test_the_paper_profile_end_to_end_on_msd_gtzan_and_fma_fixtures(tmp_path, caplog):
    db, audio = _msd(tmp_path / "msd")
    genres, splits = _gtzan(tmp_path / "gtzan")
    tracks_csv, fma_audio = _fma(tmp_path / "fma")
    cat = tmp_path / "catalogs"
    assert main(["-q", "catalog", "msd", str(db), str(audio), "-o", str(cat / "msd.csv")]) == 0
    assert main(["-q", "catalog", "gtzan", str(genres), "--splits", str(splits), "-o", str(cat / "gtzan.csv")]) == 0
    assert main(["-q", "catalog", "fma", str(tracks_csv), str(fma_audio), "--subset", "small",
                 "-o", str(cat / "fma_small.csv")]) == 0
    # the paper's counts, scaled down by settings only (5000 -> 4 artists, sweeps likewise)
    scaled = ["train.n_artists=4", "train.n_albums=null", "train.songs_per_artist=10", "train.artist_valid=2",
              "train.artist_test=2", "train.songs_per_album=5", "train.album_valid=1", "train.album_test=1",
              "train.negatives=1", "train.width=8", "train.epochs=1", "train.steps_per_epoch=2",
              "train.valid_batches=1", "train.batch_size=4", "train.tensorboard=false", "train.threads=1",
              "sweep_negatives=[1,2]", "sweep_negatives_artists=3", "sweep_artists=[3,4]", "n_trials=40",
              "sweep_games=[4,8]", "sweep_games_concept=artist", "train.game_column=artist",
              "map_points=30", "workers=1", "transfer.seeds=[0]", "transfer.cnn_trials=1", "transfer.cnn_steps=3",
              "transfer.baseline_width=4"]
    work = tmp_path / "work"
    assert main(["-q", "run", "--profile", "paper", "--train-catalog", str(cat / "msd.csv"),
                 "--transfer-catalog", str(cat / "gtzan.csv"), "--transfer-catalog", str(cat / "fma_small.csv"),
                 "-o", str(work), *[f"--set={s}" for s in scaled]]) == 0
    report = (work / "report" / "report.md").read_text()
    results = json.loads((work / "report" / "results.json").read_text())
    # Table 1 with the published joint row; Table 2 for both datasets with their published numbers
    assert "0.686" in report and "0.763" in report and "0.945" in report
    assert [t["dataset"] for t in results["transfer"]] == ["gtzan", "fma_small"]
    assert "0.745" in report and "0.593" in report
    # Tables 3 and 4: the sweeps, every point finished
    kinds = {s["kind"]: s for s in results["sweeps"]}
    assert set(kinds) == {"negatives", "artists", "games"}
    assert [p["value"] for p in kinds["negatives"]["points"]] == [1, 2]
    assert [p["value"] for p in kinds["artists"]["points"]] == [3, 4]
    assert [p["value"] for p in kinds["games"]["points"]] == [4, 8] and kinds["games"]["concept"] == "artist"
    assert "Table 4, by games: sweep over games" in report
    assert all(p["status"] == "done" for s in kinds.values() for p in s["points"])
    assert (work / "stores" / "msd" / "DONE").is_file() and (work / "model" / "model.json").is_file()
    # a rerun resumes: every stage was done
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="musicrep.pipeline"):
        assert main(["run", "--profile", "paper", "--train-catalog", str(cat / "msd.csv"),
                     "--transfer-catalog", str(cat / "gtzan.csv"), "--transfer-catalog", str(cat / "fma_small.csv"),
                     "-o", str(work), *[f"--set={s}" for s in scaled]]) == 0
    err = caplog.text
    assert "stage sweep-artists: done earlier" in err and "stage train-joint: done earlier" in err
    assert "starting" not in err
