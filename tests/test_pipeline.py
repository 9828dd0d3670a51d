import json
import os
from pathlib import Path

import pytest

from musicrep.errors import ConfigError
from musicrep.pipeline import PROFILES, Stages, profile_config


def test_profiles_resolve_and_overrides_reach_the_groups():
    quick = profile_config("quick", overrides=("train.epochs=5", "seed=3"))
    assert quick.train_corpus == "games-mini" and quick.seed == 3
    assert quick.train["epochs"] == 5 and quick.train["width"] == PROFILES["quick"]["train"]["width"]
    assert profile_config("default").train_corpus == "games-full"


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.epoch=5", r"train\.\*: unknown setting epoch"),
        ("train.lr=0", r"train\.\*: lr=0.0 is out of range"),
        ("transfer.seeds=x", r"transfer\.\*: seeds\[0\] must be an integer"),
        ("concepts=[artist,path]", "concept 'path'"),
        ("workers=0", "workers=0 is out of range"),
    ],
)
def test_bad_settings_fail_before_any_work(override, message):
    with pytest.raises(ConfigError, match=message):
        profile_config("quick", overrides=(override,))
    with pytest.raises(ConfigError, match="unknown profile"):
        profile_config("huge")


def test_stages_run_once_and_record_wall_time(tmp_path):
    calls = []
    stages = Stages(tmp_path)
    stages.run("a", lambda: calls.append("a"))
    with pytest.raises(RuntimeError):
        stages.run("b", lambda: (_ for _ in ()).throw(RuntimeError("killed")))
    again = Stages(tmp_path)  # a rerun: "a" is done, "b" is not
    again.run("a", lambda: calls.append("a again"))
    again.run("b", lambda: calls.append("b"))
    assert calls == ["a", "b"]
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert set(timings) == {"a", "b"} and all(v >= 0 for v in timings.values())
    assert (tmp_path / ".stages" / "b.done").is_file()


def test_a_stage_runs_again_when_its_settings_change_and_so_do_the_later_ones(tmp_path):
    calls = []
    stages = Stages(tmp_path)
    stages.run("train", lambda: calls.append("train 10"), settings={"epochs": 10})
    stages.run("report", lambda: calls.append("report"), settings={})
    again = Stages(tmp_path)
    again.run("train", lambda: calls.append("train 10 again"), settings={"epochs": 10})  # same settings: skipped
    again.run("report", lambda: calls.append("report again"), settings={})
    changed = Stages(tmp_path)
    changed.run("train", lambda: calls.append("train 20"), settings={"epochs": 20})
    changed.run("report", lambda: calls.append("report after train 20"), settings={})  # its input changed
    assert calls == ["train 10", "report", "train 20", "report after train 20"]
    assert json.loads((tmp_path / ".stages" / "train.done").read_text())["settings"] != ""


def test_a_train_stage_with_changed_settings_starts_afresh_and_resumes_otherwise(synth_store, tmp_path):
    from musicrep.training.checkpoint import read_checkpoint
    from musicrep.config import load_config
    from musicrep.pipeline import _train_stage
    from musicrep.training.settings import TrainConfig

    base = ["concept=artist", "width=8", "negatives=2", "batch_size=4", "steps_per_epoch=2", "valid_batches=1",
            "songs_per_artist=10", "tensorboard=false", "threads=1"]
    run = tmp_path / "runs" / "artist"
    _train_stage(synth_store.path, run, load_config(TrainConfig, path=None, overrides=base + ["epochs=1", "lr=0.03"]))
    # more epochs: the same run continues (its first epoch is kept)
    _train_stage(synth_store.path, run, load_config(TrainConfig, path=None, overrides=base + ["epochs=2", "lr=0.03"]))
    assert read_checkpoint(run / "last.pt")["epoch"] == 2 and len((run / "metrics.csv").read_text().splitlines()) == 3
    # another lr: the old run answers another question; trained again from the start
    _train_stage(synth_store.path, run, load_config(TrainConfig, path=None, overrides=base + ["epochs=1", "lr=0.01"]))
    assert "lr: 0.01" in (run / "config.yaml").read_text() and read_checkpoint(run / "last.pt")["epoch"] == 1
    assert (run / "DONE").is_file()


def test_a_store_holding_tracks_its_catalog_lacks_is_prepared_again(tmp_path):
    """Holding games out after the store was made must take their tracks out of it: training reads the store."""
    from musicrep.data.catalog import read_csv
    from musicrep.data.store import open_store
    from musicrep.pipeline import _prepare_stage
    from musicrep.testing import synth_collection

    catalog = synth_collection(tmp_path / "audio", n_artists=2, albums_per_artist=1, songs_per_album=2, seconds=4.0)
    config = profile_config("quick", overrides=("workers=1",))
    store = _prepare_stage(tmp_path, Stages(tmp_path), config, name="games", catalog=catalog, user=True)
    assert len(open_store(store).catalog) == 4
    full = read_csv(catalog)
    kept = full.filter(lambda t: t.artist == full[0].artist)
    kept.write_csv(tmp_path / "kept.csv")
    _prepare_stage(tmp_path, Stages(tmp_path), config, name="games", catalog=tmp_path / "kept.csv", user=True)
    assert sorted(open_store(store).catalog.track_ids) == sorted(kept.track_ids)


def test_the_default_profile_holds_games_out_and_sweeps_over_seeds():
    config = profile_config("default")
    assert config.train_corpus == "games-full" and config.transfer_corpora == ("folk", "essen")
    from musicrep.data.corpus.games import GAMES_FULL_PACKAGES

    assert len(config.unseen_games) == 9 and set(config.unseen_games) <= set(GAMES_FULL_PACKAGES)
    assert config.sweep_seeds == (0, 1, 2) and config.sweep_artists_concept == "artist"
    assert config.sweep_games == (14, 28, 55) and config.sweep_games_concept == "track"
    with pytest.raises(ConfigError, match="concept 'path'"):
        profile_config("quick", overrides=("sweep_games_concept=path",))
    with pytest.raises(ConfigError, match="concept 'path'"):
        profile_config("quick", overrides=("sweep_artists_concept=path",))
    with pytest.raises(ConfigError, match="unknown corpus 'folkk'"):
        profile_config("quick", overrides=("transfer_corpora=[folkk]",))


def test_a_new_training_catalog_prepares_the_store_again_even_when_its_stage_ran_before(tmp_path):
    from musicrep.data.catalog import read_csv
    from musicrep.data.store import open_store
    from musicrep.pipeline import _prepare_stage
    from musicrep.testing import synth_collection

    catalog = synth_collection(tmp_path / "audio", n_artists=2, albums_per_artist=1, songs_per_album=2, seconds=4.0)
    config = profile_config("quick", overrides=("workers=1",))
    store = _prepare_stage(tmp_path, Stages(tmp_path), config, name="games", catalog=catalog, user=False)
    full = read_csv(catalog, resolve_paths=False)
    full.filter(lambda t: t.artist == full[0].artist).write_csv(catalog)  # the same file, fewer tracks
    _prepare_stage(tmp_path, Stages(tmp_path), config, name="games", catalog=catalog, user=False)
    assert len(open_store(store).catalog) == 2


def test_parallel_stages_run_in_worker_processes_and_a_failure_loses_no_finished_stage(tmp_path):
    import functools

    stages = Stages(tmp_path)
    done = [tmp_path / f"out-{i}" for i in range(3)]
    jobs = [(f"touch-{i}", functools.partial(Path.touch, done[i]), {"i": i}) for i in range(3)]
    jobs.insert(1, ("fails", functools.partial(Path.read_text, tmp_path / "missing"), {}))
    with pytest.raises(FileNotFoundError):
        stages.run_parallel(jobs, jobs=2)
    assert all(p.is_file() for p in done)  # the others ran to their end
    assert sorted(p.name for p in (tmp_path / ".stages").glob("*.done")) == ["touch-0.done", "touch-1.done",
                                                                             "touch-2.done"]
    assert any(k.endswith("(wall, 2 at once)") for k in stages.timings)
    for p in done:
        p.unlink()
    again = Stages(tmp_path)
    with pytest.raises(FileNotFoundError):
        again.run_parallel(jobs, jobs=2)  # a rerun runs only the failed stage
    assert not any(p.exists() for p in done)
    (tmp_path / "missing").write_text("here")
    Stages(tmp_path).run_parallel(jobs, jobs=1)  # one at a time, here: the same stages and markers
    assert (tmp_path / ".stages" / "fails.done").is_file() and not any(p.exists() for p in done)


def test_a_stage_in_a_worker_gets_its_threads_and_keyword_arguments(tmp_path):
    import functools

    from musicrep.pipeline import worker_threads

    out = tmp_path / "out.txt"
    job = functools.partial(Path.write_text, self=out, data="ran")
    Stages(tmp_path).run_parallel([("write", job, {}), ("write-2", functools.partial(Path.touch, tmp_path / "b"), {})],
                                  jobs=2)
    assert out.read_text() == "ran" and (tmp_path / "b").is_file()
    assert worker_threads(2) == max(1, (os.cpu_count() or 1) // 2) and worker_threads(10_000) == 1
