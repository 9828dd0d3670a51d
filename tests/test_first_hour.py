"""A new user's first hour: named profiles, settings chosen from the collection, a
resume that needs no settings restated, flags after the subcommand, readable logs."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from musicrep import progress
from musicrep.cli import build_parser, main
from musicrep.errors import ConfigError
from musicrep.training.profiles import (
    auto_settings,
    profile_settings,
    resolve_config_file,
    train_config,
)

TINY = ["concept=artist", "width=8", "negatives=2", "batch_size=4", "steps_per_epoch=3", "valid_batches=1",
        "songs_per_artist=10", "tensorboard=false", "seed=3", "threads=1"]
ENV = {**os.environ, "MUSICREP_QUIET": "1", "OMP_NUM_THREADS": "1"}


def _catalog(spec: dict[str, int], *, albums_of: int = 5) -> list:
    """Tracks: artist -> song count; albums of ``albums_of`` songs within each artist."""
    from musicrep.data.catalog import Track

    return [Track(f"{a}-{i:03d}", f"{a}/{i}.flac", artist=a, album=f"{a} {i // albums_of}")
            for a, n in spec.items() for i in range(n)]


def test_profiles_are_found_by_name_and_paper_is_the_defaults(capsys):
    paper, _ = train_config(profile="paper")
    default, _ = train_config()
    assert paper == default and paper.width == 256 and paper.songs_per_artist == 20
    cpu, _ = train_config(profile="cpu", overrides=["epochs=3"])
    assert (cpu.width, cpu.lr, cpu.batch_size, cpu.epochs) == (128, 0.01, 15, 3)
    assert train_config(config_file="cpu")[0] == train_config(profile="cpu")[0]  # `--config cpu` works
    assert resolve_config_file("cpu").is_file() and str(resolve_config_file("my.yaml")) == "my.yaml"
    assert main(["config", "show", "--profile", "small", "--set", "lr=0.01"]) == 0
    out = capsys.readouterr().out
    assert "width: 64\n" in out and "lr: 0.01\n" in out and "songs_per_artist: 6\n" in out


def test_the_main_job_trains_with_the_cpu_profile():
    from musicrep.pipeline import PROFILES

    assert PROFILES["default"]["train"] == profile_settings("cpu")


def test_auto_fits_a_fifty_song_library_and_says_why():
    settings, why = auto_settings(_catalog({f"a{i}": 10 for i in range(5)}), concepts=("artist", "album"))
    assert (settings["songs_per_artist"], settings["artist_valid"], settings["artist_test"]) == (10, 1, 1)
    assert (settings["songs_per_album"], settings["album_valid"], settings["album_test"]) == (5, 1, 1)
    # 10 albums have 5 songs, but the artist split's held-out songs leave 4 that fit 3/1/1:
    # 3 other albums' validation songs, so 3 distinct negatives
    assert settings["negatives"] == 3 and settings["width"] == 64
    assert any(line.startswith("artist: 5 artists x 10 songs (8/1/1): ") for line in why)
    assert any(line.startswith("album: 4 albums x 5 songs (3/1/1) (10 have the songs;") for line in why)
    # 3 artists: distinct validation negatives come from 2 other artists' valid songs
    settings, _ = auto_settings(_catalog({"x": 30, "y": 25, "z": 7}), concepts=("artist",))
    assert settings["songs_per_artist"] == 20 and settings["artist_valid"] == 2 and settings["negatives"] == 2
    # one artist only: no artist split, said so
    settings, why = auto_settings(_catalog({"solo": 40}), concepts=("artist",))
    assert "songs_per_artist" not in settings or settings["songs_per_artist"] == profile_settings("cpu")["songs_per_artist"]
    assert any("fewer than 2 artists have 4 songs" in line for line in why)
    with pytest.raises(ConfigError, match="give the store"):
        train_config(profile="auto")


def test_auto_trains_on_the_store(synth_store, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--store", str(synth_store.path), "-o", str(run), "--profile", "auto",
                 "--set", "epochs=1", "--set", "steps_per_epoch=2", "--set", "width=8", "--set", "threads=1",
                 "--set", "tensorboard=false"]) == 0
    err = capsys.readouterr().err
    assert "profile auto chose:" in err and "6 artists x 10 songs (8/1/1)" in err
    assert "songs_per_artist: 10" in (run / "config.yaml").read_text()


def test_resume_uses_the_runs_own_settings(synth_store, tmp_path):
    run = tmp_path / "run"
    base = ["train", "--store", str(synth_store.path), "-o", str(run)]
    assert main(base + [f"--set={s}" for s in TINY + ["epochs=1"]]) == 0
    # only what changes is restated: the run's config.yaml supplies the rest
    assert main(base + ["--resume", "--set", "epochs=2"]) == 0
    assert (run / "DONE").read_text().startswith("epoch 2 ")


def test_ctrl_c_prints_the_exact_resume_command(synth_store, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "musicrep", "train", "--store", str(synth_store.path), "-o",
                             str(run), *[f"--set={s}" for s in TINY + ["epochs=50", "steps_per_epoch=40"]]],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            # a shell's background job (`make test &`) starts with SIGINT ignored, and a
                            # child inherits that: Ctrl-C as a terminal delivers it needs the default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not (run / "last.pt").is_file():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"musicrep train --store {synth_store.path} -o {run} --resume" in err, err[-2000:]


def test_quiet_and_verbose_after_any_subcommand():
    parser = build_parser()
    for argv, quiet in ((["-q", "train", "--store", "s", "-o", "o"], True),
                        (["train", "--store", "s", "-o", "o", "-q"], True),
                        (["train", "--store", "s", "-o", "o"], False),
                        (["config", "show", "-q"], True)):
        assert parser.parse_args(argv).quiet is quiet
    assert parser.parse_args(["index", "build", "--run", "r", "--catalog", "c", "-o", "o", "-v"]).verbose


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(monkeypatch):
    stream = io.StringIO()  # a file: isatty() is False
    monkeypatch.setattr(progress, "_enabled", True)
    for _ in progress.bar(range(3), file=stream, desc="work", mininterval=0, miniters=1):
        logging.getLogger("musicrep.test").info("a log line")
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    assert [line.split(":")[0] for line in text.splitlines()] == ["work"] * len(text.splitlines())
    assert "3/3" in text.splitlines()[-1]


def test_train_says_what_each_concept_used(synth_store, tmp_path, caplog):
    from musicrep.config import load_config
    from musicrep.training.settings import TrainConfig
    from musicrep.training.train import train

    with caplog.at_level(logging.INFO, logger="musicrep.training.train"):
        train(synth_store.path, out_dir=tmp_path / "run", config=load_config(TrainConfig, path=None, overrides=TINY + ["epochs=1"]))
    line = next(r.getMessage() for r in caplog.records
                if r.name == "musicrep.training.train" and r.getMessage().startswith("artist split:"))
    assert line.startswith("artist split: 60 songs of 6 artists (36 train, 12 valid, 12 test); 0 of the catalog's 60")


def test_musicrep_quiet_is_read_when_a_bar_starts_not_at_import(monkeypatch):
    from musicrep import progress

    progress.set_enabled(None)
    monkeypatch.setenv("MUSICREP_QUIET", "1")
    assert progress.bar(range(3)).disable
    monkeypatch.setenv("MUSICREP_QUIET", "0")
    assert progress.enabled()
    progress.set_enabled(False)  # -q wins over the environment
    assert progress.bar(range(3)).disable
    progress.set_enabled(None)
