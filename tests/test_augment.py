"""Augmentation of training crops in the log-mel domain: each operation does what it says, draws are
seeded by (seed, rank, step), and a resumed augmented run equals the uninterrupted one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from musicrep.config import load_config
from musicrep.data.catalog import read_csv
from musicrep.data.prepare import prepare
from musicrep.errors import ConfigError
from musicrep.testing import synth_collection
from musicrep.training.augment import AUGMENTS, augment_batches, augment_crops, parse_augment
from musicrep.training.checkpoint import read_checkpoint
from musicrep.training.settings import TrainConfig
from musicrep.training.train import train

ALWAYS = dataclasses.replace(TrainConfig(), augment_p=1.0)


def _crops(m: int = 6, t: int = 40, f: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mag = torch.rand(m, t, f, generator=g) * 2.0 + 0.05
    return torch.log10(1.0 + 10.0 * mag)


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    return (torch.pow(10.0, x.double()) - 1.0) / 10.0


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_names_parse_and_bad_names_are_refused():
    assert parse_augment("none") == () and parse_augment("gain, eq") == ("gain", "eq")
    with pytest.raises(ConfigError, match="unknown augmentation 'reverb'"):
        parse_augment("gain,reverb")
    with pytest.raises(ConfigError, match="reverb"):
        TrainConfig(augment="reverb")
    assert TrainConfig().augment == "none"  # off by default: the paper has none


def test_gain_scales_every_band_of_a_crop_by_one_factor_within_the_range():
    x = _crops()
    y = augment_crops(x, names=("gain",), config=ALWAYS, generator=_gen())
    ratio = _magnitude(y) / _magnitude(x)
    per_crop = ratio.reshape(len(x), -1)
    assert torch.allclose(per_crop, per_crop[:, :1].expand_as(per_crop), rtol=1e-3)
    db = 20 * torch.log10(per_crop[:, 0])
    assert (db.abs() <= ALWAYS.augment_gain_db + 1e-3).all() and db.abs().max() > 0.5


def test_eq_is_one_gain_curve_per_crop_over_the_mel_bands():
    x = _crops()
    y = augment_crops(x, names=("eq",), config=ALWAYS, generator=_gen())
    ratio = _magnitude(y) / _magnitude(x)  # [M, T, F]: the same curve in every frame
    assert torch.allclose(ratio, ratio[:, :1, :].expand_as(ratio), rtol=1e-3)
    db = 20 * torch.log10(ratio[:, 0, :])
    assert (db.abs() <= ALWAYS.augment_eq_db + 1e-3).all() and (db.max(1).values - db.min(1).values > 0.5).all()


def test_noise_only_adds_and_stays_far_below_the_signal():
    x = _crops()
    y = augment_crops(x, names=("noise",), config=ALWAYS, generator=_gen())
    added = _magnitude(y) - _magnitude(x)
    assert (added >= -1e-6).all() and added.max() > 0
    assert added.mean() < _magnitude(x).mean() * 10 ** (-(ALWAYS.augment_noise_db - 10 - 6) / 20)


def test_stretch_resamples_time_and_pitch_moves_the_mel_axis():
    x = torch.zeros(2, 50, 32)
    x[:, 10, :] = 1.0  # a click at frame 10
    x[:, :, 16] += 2.0  # a tone in band 16
    cfg = dataclasses.replace(ALWAYS, augment_stretch=0.2, augment_pitch_bins=3.0)
    y = augment_crops(x, names=("stretch",), config=cfg, generator=_gen())
    clicks = y[:, :, 0].argmax(dim=1)
    assert ((clicks >= 10 / 1.2 - 1) & (clicks <= 10 / 0.8 + 1)).all()
    assert torch.equal(y[:, 0], x[:, 0])  # the crop still starts where it started
    z = augment_crops(x, names=("pitch",), config=cfg, generator=_gen(1))
    tone = z[:, 25, :].argmax(dim=1)
    assert ((tone - 16).abs() <= 3).all() and (tone != 16).any()


def test_probability_zero_changes_nothing_and_draws_are_seeded():
    x = _crops()
    never = dataclasses.replace(TrainConfig(), augment_p=0.0)
    assert torch.equal(augment_crops(x, names=AUGMENTS, config=never, generator=_gen()), x)
    b = {"artist": x.reshape(2, 3, *x.shape[1:])}
    cfg = dataclasses.replace(TrainConfig(), augment="gain,eq,noise,stretch,pitch")
    one = augment_batches(b, config=cfg, step=5, rank=0)["artist"]
    assert torch.equal(one, augment_batches(b, config=cfg, step=5, rank=0)["artist"])
    assert not torch.equal(one, augment_batches(b, config=cfg, step=6, rank=0)["artist"])
    assert not torch.equal(one, augment_batches(b, config=cfg, step=5, rank=1)["artist"])
    assert one.shape == b["artist"].shape and torch.isfinite(one).all()
    assert augment_batches(b, config=TrainConfig(), step=5) is b  # none: the batch itself


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    catalog = synth_collection(root / "audio", n_artists=4, albums_per_artist=2, songs_per_album=3, seconds=6.0)
    return prepare(read_csv(catalog), out_dir=root / "store", workers=1).path


def test_an_augmented_run_trains_and_resumes_exactly(store, tmp_path):
    base = ["concept=artist", "width=8", "negatives=2", "batch_size=6", "steps_per_epoch=3", "valid_batches=1",
            "songs_per_artist=6", "tensorboard=false", "threads=1", "augment=gain,eq,noise,stretch,pitch",
            "augment_p=0.8"]

    def config(*more):
        return load_config(TrainConfig, path=None, overrides=base + list(more))

    full = train(store, out_dir=tmp_path / "full", config=config("epochs=2"))
    part = train(store, out_dir=tmp_path / "part", config=config("epochs=1"))
    part = train(store, out_dir=tmp_path / "part", config=config("epochs=2"), resume=True)
    a, b = read_checkpoint(full / "last.pt"), read_checkpoint(part / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    plain = train(store, out_dir=tmp_path / "plain", config=config("epochs=2", "augment=none"))
    c = read_checkpoint(plain / "last.pt")
    assert any(not torch.equal(v, c["model"][k]) for k, v in a["model"].items())  # augmentation changed training
    assert all(np.isfinite(float(v.float().abs().sum())) for v in a["model"].values())
