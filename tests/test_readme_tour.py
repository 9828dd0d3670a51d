"""The README's first tour block, run line by line on a 50-song library of five artists
(accented and Korean names included), as a new user would run it: only the training
lines get fewer steps."""

from __future__ import annotations

import json
import shlex

import pytest
import soundfile as sf

from musicrep.cli import main
from musicrep.testing import synth_song
from test_readme import tour_blocks

SR = 22050
ARTISTS = ("Ana Lima", "Émilie Dubois", "헤로즈", "Kurt Steiner", "Mo Yan")
FAST = ["--set", "epochs=1", "--set", "steps_per_epoch=4", "--set", "valid_batches=1", "--set", "threads=1",
        "--set", "tensorboard=false"]


def _library(root):
    """Artist/Album/NN Title.flac: five artists x two albums x five 8-s songs."""
    for a, artist in enumerate(ARTISTS):
        for b in range(2):
            folder = root / artist / f"Album {b + 1}"
            folder.mkdir(parents=True)
            for s in range(5):
                y = synth_song(artist=a, album=b, song=s, seconds=8.0, sr=SR)
                sf.write(str(folder / f"{s + 1:02d} Song {s + 1}.flac"), y, SR)
    return root


@pytest.mark.slow
def test_the_readme_tour_runs_on_a_fifty_song_library(tmp_path, monkeypatch, capsys):
    library = _library(tmp_path / "Music")
    monkeypatch.chdir(tmp_path)
    y, _ = sf.read(str(library / "헤로즈" / "Album 1" / "01 Song 1.flac"))
    sf.write("song.mp3", y, SR, format="MP3")
    fragment = "헤로즈/Album 2/03"
    lines = [ln.split("  #", 1)[0].strip() for ln in tour_blocks()[0].splitlines()]
    commands = [ln for ln in lines if ln.startswith("musicrep ")]
    assert len(commands) >= 10
    outputs = {}
    for line in commands:
        argv = shlex.split(line.replace("~/Music", str(library)).replace('"Album 2/03"', shlex.quote(fragment)))[1:]
        if argv[0] == "train":
            argv += FAST
        capsys.readouterr()
        assert main(argv) == 0, line
        outputs[line] = capsys.readouterr().out
    # what each step left behind is what the README says
    assert (tmp_path / "embeddings" / "song.mp3.npz").is_file()  # the shipped model, no training
    assert "songs_per_artist: 10" in next(v for k, v in outputs.items() if "config show" in k)
    assert (tmp_path / "runs" / "joint" / "DONE").is_file() and (tmp_path / "vectors.parquet").is_file()
    assert (tmp_path / "vectors.segments.parquet").is_file() and (tmp_path / "model.onnx").is_file()
    hits = json.loads(next(v for k, v in outputs.items() if "--json" in k))
    assert 1 <= len(hits) <= 5 and all(h["artist"] != "헤로즈" for h in hits)  # --exclude-same artist
    assert "헤로즈" in (tmp_path / "catalog.csv").read_text(encoding="utf-8")
