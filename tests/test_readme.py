"""The README's Python API block runs as written, on a tiny trained collection."""

import re
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from musicrep.data.catalog import read_csv
from musicrep.config import load_config
from musicrep.inference.index_build import build_from_runs
from musicrep.data.prepare import prepare
from musicrep.testing import synth_collection, synth_song
from musicrep.training.settings import TrainConfig
from musicrep.training.train import train

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_runs(tmp_path, monkeypatch):
    catalog = synth_collection(tmp_path / "lib", n_artists=4, albums_per_artist=2, songs_per_album=4, seconds=5.0)
    prepare(read_csv(catalog), out_dir=tmp_path / "store", workers=1)
    config = load_config(TrainConfig, path=None, overrides=[
        "concept=joint", "width=8", "epochs=1", "steps_per_epoch=2", "batch_size=4", "valid_batches=1",
        "songs_per_artist=4", "artist_valid=1", "artist_test=1", "songs_per_album=4", "negatives=2",
        "tensorboard=false", "threads=1",
    ])
    train(tmp_path / "store", out_dir=tmp_path / "runs" / "joint", config=config)
    sf.write(tmp_path / "song.ogg", synth_song(artist=1, album=0, song=9, seconds=7.0), 22050, subtype="VORBIS")
    shutil.copytree(tmp_path / "lib" / "Artist 00" / "Album 00-00", tmp_path / "new-album")
    build_from_runs(runs={"artist": tmp_path / "runs" / "joint"}, catalog=catalog, out=tmp_path / "index",
                    store=tmp_path / "store")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(python_api_block(), str(README), "exec"), scope)
    assert scope["S"].shape[1] == 128
    assert scope["emb"].vector.shape == (16,)
    np.testing.assert_allclose(scope["emb"].segments.mean(axis=0), scope["emb"].vector, rtol=1e-5, atol=1e-6)
    assert len(scope["vectors"]) == 4 and not scope["errors"]
    assert 0 < len(scope["hits"]) <= 10


def tour_blocks() -> list[str]:
    """The ``sh`` code blocks of the README's command-line tour."""
    section = README.read_text(encoding="utf-8").split("## Command-line tour", 1)[1].split("\n## ", 1)[0]
    return [part.split("```", 1)[0] for part in section.split("```sh")[1:]]


def test_readme_cli_tour_parses():
    """Every ``musicrep ...`` line of the README's tour is accepted by the real parser."""
    import shlex

    from musicrep.cli import build_parser

    lines = [line.split("#", 1)[0].strip() for block in tour_blocks() for line in block.splitlines()]
    commands = [shlex.split(line) for line in lines if line.startswith(("musicrep ", "torchrun "))]
    assert len(commands) >= 15
    parser = build_parser()
    for argv in commands:
        if argv[0] == "torchrun":
            argv = ["musicrep"] + argv[argv.index("musicrep") + 1 :]
        args = parser.parse_args(argv[1:])
        assert callable(args.func), argv
