import os
import subprocess
import shutil

import numpy as np
import pytest
import soundfile as sf

from musicrep.data.audio import load_audio, resample, stream_audio, to_mono
from musicrep.errors import (
    AudioError,
    EmptyAudioError,
    InvalidAudioError,
    SilentAudioError,
    TooShortAudioError,
    UnreadableAudioError,
)


def dominant_freq(y, sr):
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spec)]


@pytest.mark.parametrize("sr_in", [8000, 22050, 44100, 48000, 192000])
def test_resamples_to_22050_and_keeps_pitch(tone_file, sr_in):
    path = tone_file(f"tone{sr_in}.wav", freq=440.0, seconds=2.0, sr=sr_in)
    y = load_audio(path, sr=22050)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 2 * 22050) <= 2
    assert abs(dominant_freq(y, 22050) - 440.0) < 2.0


@pytest.mark.parametrize("ext,subtype", [("flac", None), ("ogg", "VORBIS")])
def test_compressed_formats(tone_file, ext, subtype):
    y = load_audio(tone_file(f"t.{ext}", seconds=2.0, sr=44100, subtype=subtype))
    assert abs(dominant_freq(y, 22050) - 440.0) < 2.0


def test_multichannel_is_averaged(tmp_path):
    sr = 22050
    left = np.full(sr, 0.5, np.float32)
    right = np.full(sr, -0.1, np.float32)
    sf.write(tmp_path / "st.wav", np.stack([left, right, right, left], axis=1), sr, subtype="FLOAT")
    y = load_audio(tmp_path / "st.wav")
    np.testing.assert_allclose(y, 0.2, atol=1e-6)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_ffmpeg_fallback_for_mp3_container(tone_file, tmp_path):
    wav = tone_file("t.wav", seconds=2.0, sr=44100)
    m4a = tmp_path / "t.m4a"  # AAC in MP4: libsndfile cannot read it, ffmpeg can
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), str(m4a)], check=True)
    y = load_audio(m4a)
    assert abs(dominant_freq(y, 22050) - 440.0) < 3.0
    assert abs(len(y) - 2 * 22050) < 3000  # encoder padding


def test_errors_name_the_file(tmp_path, tone_file):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio")
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    link = tmp_path / "link.wav"
    link.symlink_to(tmp_path / "gone.wav")
    header_only = tmp_path / "header.wav"
    sf.write(header_only, np.zeros(0, np.float32), 22050)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(22050 * 4, np.float32), 22050)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(22050 * 4, np.nan, np.float32), 22050, subtype="FLOAT")
    short = tone_file("short.wav", seconds=1.0)
    one = tmp_path / "one.wav"
    sf.write(one, np.array([0.5], np.float32), 22050)
    cases = {
        empty: EmptyAudioError,
        text: UnreadableAudioError,
        folder: UnreadableAudioError,
        link: UnreadableAudioError,
        tmp_path / "missing.wav": UnreadableAudioError,
        header_only: EmptyAudioError,
        silent: SilentAudioError,
        nan: InvalidAudioError,
        one: TooShortAudioError,
        short: TooShortAudioError,
    }
    for path, kind in cases.items():
        with pytest.raises(kind) as info:
            load_audio(path, min_samples=128 * 512)
        assert str(path) in str(info.value)
        assert isinstance(info.value, AudioError) and info.value.path == str(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_permission(tone_file):
    path = tone_file("locked.wav")
    path.chmod(0)
    with pytest.raises(UnreadableAudioError, match="permission"):
        load_audio(path)


def test_long_file_streams_in_blocks(tmp_path):
    # 60 s at 44.1 kHz arrives in many blocks; the streamed total is the whole signal.
    sr = 44100
    y = (0.1 * np.sin(np.arange(sr * 60) * 0.05)).astype(np.float32)
    sf.write(tmp_path / "long.flac", y, sr)
    sizes = [len(b) for b in stream_audio(tmp_path / "long.flac", sr=22050)]
    assert len(sizes) > 5
    assert abs(sum(sizes) - 60 * 22050) <= 2


def test_array_helpers(rng):
    y = rng.standard_normal((1000, 2)).astype(np.float32)
    np.testing.assert_allclose(to_mono(y), y.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(to_mono(y.T), y.mean(axis=1), rtol=1e-6)  # librosa's [channels, n]
    pcm = np.array([[16384, -16384], [32767, 0]] * 3, dtype=np.int16)  # stereo int16: scaled, then mixed
    np.testing.assert_allclose(to_mono(pcm), [0.0, 32767 / 65536] * 3, rtol=1e-6)
    with pytest.raises(InvalidAudioError, match="<array>"):
        to_mono(np.array([0.0, np.nan]))
    with pytest.raises(EmptyAudioError):
        to_mono(np.zeros((0,), np.float32))
    assert len(resample(np.zeros(44100, np.float32), orig_sr=44100, target_sr=22050)) == 22050
