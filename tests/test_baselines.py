"""Baselines of Table 2: summary features (MFCC / log-mel statistics), the encoders' input statistics, the names."""

from __future__ import annotations

import numpy as np
import pytest

from musicrep.evaluation.baselines import (
    BASELINES,
    _frame_moments,
    _scalar_stats,
    check_baselines,
    summary_features,
)
from musicrep.errors import ConfigError


def test_summary_features():
    frames = np.random.default_rng(0).normal(size=(300, 128)).astype(np.float32)
    assert summary_features(frames, kind="logmel").shape == (256,)
    m = summary_features(frames, kind="mfcc", n_mfcc=13)
    assert m.shape == (26,)
    # the 0th orthonormal DCT coefficient is the band mean times sqrt(128)
    assert m[0] == pytest.approx(frames.mean() * np.sqrt(128), rel=1e-4)
    with pytest.raises(ConfigError):
        summary_features(frames, kind="chroma")


class _Frames:
    """Just enough of a FeatureStore: ``frames(track_id)``."""

    def __init__(self, frames):
        self._frames = frames

    def frames(self, track_id):
        return self._frames[track_id]


def test_frame_moments_give_the_scalar_stats_of_the_training_frames():
    rng = np.random.default_rng(0)
    frames = {f"t{i}": (rng.normal(size=(50 + 10 * i, 128)) * (i + 1) + i).astype(np.float32) for i in range(4)}
    moments = _frame_moments(_Frames(frames), list(frames))
    assert moments.shape == (4, 3) and moments[2, 0] == 70 * 128
    train = np.array([1, 3])  # rows of the training songs only
    mean, std = _scalar_stats(moments[train])
    both = np.concatenate([frames["t1"], frames["t3"]]).astype(np.float64)
    assert (mean, std) == (pytest.approx(both.mean()), pytest.approx(both.std()))
    flat = _scalar_stats(_frame_moments(_Frames({"s": np.full((10, 128), 2.0, np.float32)}), ["s"]))
    assert flat == (pytest.approx(2.0), 1e-6)  # a constant input gets the floor, not a division by zero


def test_baseline_names_are_checked():
    assert check_baselines(iter(["mfcc", "genres"])) == ["mfcc", "genres"]
    assert set(BASELINES) == {"genres", "random", "mfcc", "logmel"}
    with pytest.raises(ConfigError, match="'vggish'"):
        check_baselines(("mfcc", "vggish"))
