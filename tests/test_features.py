import numpy as np
import pytest

from musicrep.config import FeatureConfig
from musicrep.data.features import (
    hz_to_mel,
    log_mel,
    log_mel_stream,
    mel_filterbank,
    mel_to_hz,
    n_frames_for,
)

librosa = pytest.importorskip("librosa")

# The stated tolerance of the front end against librosa (float32 arithmetic).
ATOL = 1e-4


def reference(y):
    mel = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=512, n_mels=128, power=1.0)
    return np.log10(1 + 10 * mel).T


@pytest.mark.parametrize("n", [65536, 22050 * 5 + 17, 200_001])
def test_log_mel_matches_librosa(rng, n):
    y = (0.3 * rng.standard_normal(n)).astype(np.float32)
    ours = log_mel(y)
    ref = reference(y)
    assert ours.shape == ref.shape == (1 + n // 512, 128)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)


def test_mel_filterbank_matches_librosa():
    ours = mel_filterbank(sr=22050, n_fft=1024, n_mels=128)
    ref = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=128)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


def test_mel_scale_round_trip():
    f = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 11025.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(hz_to_mel(1000.0), 15.0)


def test_pure_tone_lands_in_its_own_band():
    sr = 22050
    t = np.arange(sr * 3) / sr
    fb = mel_filterbank(sr=sr, n_fft=1024, n_mels=128)
    for freq in (220.0, 1000.0, 5000.0):
        y = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
        band = int(np.argmax(log_mel(y)[10:-10].mean(axis=0)))
        bin_ = int(round(freq * 1024 / sr))
        # the loudest band is one whose filter covers the tone's FFT bin most
        assert fb[band, bin_] >= 0.5 * fb[:, bin_].max()


def test_stream_equals_whole_signal(rng):
    y = rng.standard_normal(100_000).astype(np.float32)
    whole = log_mel(y)
    for block in (1, 511, 512, 4096, 100_000):
        blocks = (y[i : i + block] for i in range(0, len(y), block))
        streamed = np.concatenate(list(log_mel_stream(blocks, frames_per_chunk=37)))
        # equal up to float32 rounding (FFT/BLAS batch sizes differ by chunk)
        np.testing.assert_allclose(streamed, whole, atol=1e-6, rtol=0)


def test_frame_count_and_errors():
    cfg = FeatureConfig()
    assert n_frames_for(128 * 512, config=cfg) == 129  # the shortest one-segment signal
    with pytest.raises(ValueError, match="22050"):
        log_mel(np.zeros(1000, np.float32), sr=44100)
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((1000, 2), np.float32))


def test_silence_gives_zero_features():
    assert np.all(log_mel(np.zeros(22050, np.float32)) == 0.0)
