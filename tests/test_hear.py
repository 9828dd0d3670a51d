"""musicrep.hear: the HEAR 2021 common API, checked as its validator and eval kit use it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from musicrep import hear
from musicrep.training.checkpoint import save_checkpoint
from musicrep.config import FeatureConfig
from musicrep.errors import AudioError, ConfigError
from musicrep.training.model import Encoder


@pytest.fixture(scope="module")
def model() -> hear.HearModel:
    return hear.load_model("")  # the shipped model at 48 kHz, as the eval kit loads it without --model


@pytest.fixture(scope="module")
def native() -> hear.HearModel:
    """The shipped model at its own 22,050 Hz: no resampling, so results equal `musicrep embed`'s."""
    return hear.load_model("", sample_rate=22050)


def noise(rng, *, sounds: int, seconds: float, sr: int) -> torch.Tensor:
    """[sounds, n] white noise in [-1, 1), float32, as the HEAR validator makes it."""
    return torch.from_numpy(rng.uniform(-1, 1, size=(sounds, int(seconds * sr))).astype(np.float32))


@pytest.fixture
def batch(rng, model) -> torch.Tensor:
    """Three 4-s sounds at the model's 48 kHz."""
    return noise(rng, sounds=3, seconds=4.0, sr=model.sample_rate)


def chord(sr: int, *, seconds: float = 4.0) -> torch.Tensor:
    """[1, n] a pulsing chord below 4 kHz: the same sound at any rate >= 8 kHz."""
    t = np.arange(int(seconds * sr)) / sr
    y = sum(a * np.sin(2 * np.pi * f * t) for f, a in ((220, 0.5), (440, 0.3), (1250, 0.2), (3100, 0.1)))
    y *= 0.25 * (1 + np.sin(2 * np.pi * 1.5 * t))
    return torch.from_numpy(y.astype(np.float32))[None]


def segment_at(model: hear.HearModel, frames: np.ndarray) -> np.ndarray:
    """The encoder's embedding [D] of one segment of raw log-mel frames [W, n_mels]."""
    return model.embedder.forward(frames[None])[0]


def test_the_model_has_the_api_attributes(model):
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.sample_rate == 48000  # the rate of the HEAR tasks on Zenodo
    assert model.feature_config.sample_rate == 22050  # resampled inside to the model's own
    assert type(model.scene_embedding_size) is int and model.scene_embedding_size == model.embedder.dim
    assert type(model.timestamp_embedding_size) is int and model.timestamp_embedding_size == model.embedder.dim
    assert model.hop_frames == 2 and model.timestamp_hop_ms == pytest.approx(1000 * 2 * 512 / 22050)


def test_timestamp_embeddings_have_the_api_shapes_dtypes_and_timestamps(model, batch):
    emb, ts = hear.get_timestamp_embeddings(batch, model)
    duration_ms = 1000 * batch.shape[1] / model.sample_rate
    hop = model.timestamp_hop_ms
    n = int(duration_ms // hop) + 1  # one every hop from 0 ms while the centre lies within the clip
    assert emb.shape == (3, n, model.timestamp_embedding_size) and emb.dtype == torch.float32
    assert ts.shape == (3, n) and ts.dtype == torch.float32
    assert torch.isfinite(emb).all()
    assert torch.equal(ts[0], ts[1]) and torch.equal(ts[0], ts[2])
    step = np.diff(ts[0].numpy())
    assert hop <= 50.0 and np.allclose(step, hop, atol=1e-3)  # regular, within HEAR's 50 ms
    assert ts[0, 0] == 0.0 and duration_ms - hop < ts[0, -1] <= duration_ms
    assert not torch.allclose(emb[0], emb[1])  # each sound its own embeddings


def test_timestamps_do_not_drift_over_hours(model):
    n = 2 * 3600 * model.sample_rate + 12345  # two hours at 48 kHz: only the timestamps, no audio
    ts = hear.timestamps_ms(n, model=model)
    hop, duration_ms = model.timestamp_hop_ms, 1000 * n / model.sample_rate
    assert np.allclose(ts, np.arange(len(ts)) * hop, rtol=0, atol=1e-6)  # from the index, not summed
    assert duration_ms - hop < ts[-1] <= duration_ms


def test_a_timestamp_embedding_is_the_segment_centred_on_its_timestamp(native, rng):
    clip = noise(rng, sounds=1, seconds=4.0, sr=native.sample_rate)
    y = clip[0].numpy()
    emb, ts = hear.get_timestamp_embeddings(clip, native)
    frames = native.embedder.features(y, native.sample_rate)  # [T, n_mels], as `musicrep embed` computes them
    W, half = native.feature_config.segment_frames, native.feature_config.segment_frames // 2
    # timestamp j is frame j x hop_frames; the segment of frames 0..128 is centred on frame 64
    j = half // native.hop_frames
    assert ts[0, j] == pytest.approx(1000 * half * 512 / 22050, abs=1e-3)
    assert np.allclose(emb[0, j].numpy(), segment_at(native, frames[:W]), atol=1e-5)
    # at 0 ms the segment holds 64 frames of silence (log-mel 0), then the clip's first 65
    silence_first = np.concatenate([np.zeros((half, frames.shape[1]), np.float32), frames[: W - half]])
    assert np.allclose(emb[0, 0].numpy(), segment_at(native, silence_first), atol=1e-5)


def test_scene_embeddings_are_the_song_vectors(native, rng):
    batch = noise(rng, sounds=3, seconds=7.0, sr=native.sample_rate)  # two whole segments each
    scene = hear.get_scene_embeddings(batch, native)
    assert scene.shape == (3, native.scene_embedding_size) and scene.dtype == torch.float32
    for i in range(3):  # the mean of non-overlapping segments, exactly what musicrep embed gives
        vector = native.embedder.embed(batch[i].numpy(), native.sample_rate).vector
        assert np.allclose(scene[i].numpy(), vector, atol=1e-5)


def test_a_clip_shorter_than_a_segment_is_centred_in_silence(native, rng):
    sr, W = native.sample_rate, native.feature_config.segment_frames
    short = noise(rng, sounds=2, seconds=1.5, sr=sr)
    emb, ts = hear.get_timestamp_embeddings(short, native)
    assert emb.shape == (2, int(1500 // native.timestamp_hop_ms) + 1, native.timestamp_embedding_size)
    assert ts[0, -1] <= 1500.0 and torch.isfinite(emb).all()
    scene = hear.get_scene_embeddings(short, native)
    assert scene.shape == (2, native.scene_embedding_size) and scene.dtype == torch.float32
    gap = (W - 1) * 512 - short.shape[1]  # one segment needs 128 hops of samples
    centred = np.pad(short[0].numpy(), (gap // 2, gap - gap // 2))
    assert np.allclose(scene[0].numpy(), native.embedder.embed(centred, sr).vector, atol=1e-5)


def test_the_same_audio_gives_the_same_numbers(model, batch):
    first, ts1 = hear.get_timestamp_embeddings(batch[:2], model)
    again, ts2 = hear.get_timestamp_embeddings(batch[:2].clone(), model)
    assert torch.equal(first, again) and torch.equal(ts1, ts2)
    assert torch.equal(hear.get_scene_embeddings(batch[:2], model), hear.get_scene_embeddings(batch[:2], model))


def test_silence_is_embedded_not_refused(model):
    # files that are silent are refused elsewhere; a HEAR task may hold silent clips
    emb, _ = hear.get_timestamp_embeddings(torch.zeros((2, model.sample_rate)), model)
    scene = hear.get_scene_embeddings(torch.zeros((2, model.sample_rate)), model)
    assert torch.isfinite(emb).all() and torch.isfinite(scene).all() and torch.equal(scene[0], scene[1])


@pytest.mark.parametrize("sr", [16000, 48000])
def test_16_and_48_khz_input_is_resampled_inside(native, sr):
    other = hear.load_model("", sample_rate=sr)
    assert other.sample_rate == sr
    emb, ts = hear.get_timestamp_embeddings(chord(sr), other)
    ref_emb, ref_ts = hear.get_timestamp_embeddings(chord(native.sample_rate), native)
    assert torch.equal(ts, ref_ts)  # milliseconds of the clip, whatever its rate
    cos = torch.nn.functional.cosine_similarity
    assert cos(emb[0], ref_emb[0], dim=-1).min() > 0.999
    scene = hear.get_scene_embeddings(chord(sr), other)
    # not resampled (read as if at 22,050 Hz) the cosine is 0.91 from 16 kHz, 0.69 from 48 kHz
    assert cos(scene[0], hear.get_scene_embeddings(chord(native.sample_rate), native)[0], dim=0) > 0.999


def test_a_checkpoint_path_loads_with_its_own_front_end(tmp_path, rng):
    # a 24 kHz front end: the model takes HEAR's 48 kHz and resamples
    fc = FeatureConfig(sample_rate=24000, n_mels=16)
    encoder = Encoder(width=4, n_mels=16)
    path = save_checkpoint({"model": encoder.state_dict(), "model_config": dataclasses.asdict(encoder.model_config),
                            "feature_config": dataclasses.asdict(fc)}, path=tmp_path / "tiny.pt")
    tiny = hear.load_model(str(path))
    assert tiny.sample_rate == 48000 and tiny.scene_embedding_size == 8
    assert tiny.hop_frames == 2 and tiny.timestamp_hop_ms == pytest.approx(1000 * 2 * 512 / 24000)
    audio = noise(rng, sounds=2, seconds=3.0, sr=48000)
    emb, ts = hear.get_timestamp_embeddings(audio, tiny)
    assert emb.shape == (2, ts.shape[1], 8) and ts[0, -1] <= 3000.0 < ts[0, -1] + tiny.timestamp_hop_ms
    assert hear.get_scene_embeddings(audio, tiny).shape == (2, 8)


def test_bad_input_is_named(model):
    with pytest.raises(AudioError, match=r"2-D tensor \[n_sounds, n_samples\]"):
        hear.get_scene_embeddings(torch.zeros(48000), model)
    with pytest.raises(AudioError, match="float samples"):
        hear.get_timestamp_embeddings(torch.zeros((1, 48000), dtype=torch.int16), model)
    with pytest.raises(AudioError, match="no audio"):
        hear.get_timestamp_embeddings(torch.zeros((1, 0)), model)
    with pytest.raises(ConfigError, match="load_model"):
        hear.get_scene_embeddings(torch.zeros((1, 48000)), model.encoder)
    with pytest.raises(ConfigError, match="HEAR API allows"):
        hear.load_model("", sample_rate=24000)
