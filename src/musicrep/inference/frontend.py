"""The embedding front end: a waveform or an audio file -> log-mel frames, as the store holds them.

A waveform is mixed to mono and resampled (soxr HQ) to the model's rate; a file
is decoded and featurised in blocks (``stream_audio`` -> ``log_mel_stream``),
exactly as :func:`musicrep.data.prepare_workers.compute_track` prepares a store. Both are
rounded to float16 as the store keeps them, so a file and its stored copy feed
the encoder equal input, and refused when shorter than one segment.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import FeatureConfig
from ..data.audio import resample, stream_audio, to_mono
from ..data.features import log_mel, log_mel_stream, min_samples_for
from ..errors import ConfigError, TooShortAudioError


def segment_seconds(config: FeatureConfig) -> float:
    """Length of one segment in seconds (129 frames x hop / sr, about 3 s)."""
    return config.segment_frames * config.hop_length / config.sample_rate


def waveform_frames(audio: np.ndarray, *, sr: int, config: FeatureConfig, source: str,
                    timings: dict[str, float]) -> np.ndarray:
    """Log-mel frames of a waveform at any sample rate.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,) or (n, channels) or (channels, n)]
    sr : sample rate of ``audio`` in Hz; resampled (soxr) to ``config.sample_rate``
    config : the model's front end
    source : what to name in errors
    timings : seconds spent are added to its ``"decode"`` and ``"features"``

    Returns
    -------
    np.ndarray [shape=(T, n_mels), float32]
        Rounded to float16 precision, as the feature store holds them.
    """
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
        raise ConfigError(f"sr={sr!r} must be a positive integer sample rate in Hz")
    t0 = time.perf_counter()
    y = to_mono(audio, source=source)
    y = resample(y, orig_sr=int(sr), target_sr=config.sample_rate)  # soxr HQ, as load_audio
    timings["decode"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    frames = log_mel(y, sr=config.sample_rate, config=config)
    timings["features"] += time.perf_counter() - t0
    return store_rounded(frames, config=config, source=source, seconds=y.size / config.sample_rate)


def file_frames(path: Path, *, config: FeatureConfig, timings: dict[str, float]) -> np.ndarray:
    """Decode and featurise a file exactly as :func:`musicrep.data.prepare_workers.compute_track` does.

    Returns log-mel [T, n_mels] float32 rounded as :func:`store_rounded`; raises an
    :class:`~musicrep.errors.AudioError` naming ``path``. Seconds spent decoding and
    computing features are added to ``timings["decode"]`` and ``timings["features"]``.
    """
    blocks = _TimedBlocks(stream_audio(path, sr=config.sample_rate, min_samples=min_samples_for(config)))
    t0 = time.perf_counter()
    chunks = list(log_mel_stream(blocks, config=config))
    total = time.perf_counter() - t0
    timings["decode"] += blocks.seconds
    timings["features"] += total - blocks.seconds
    frames = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return store_rounded(frames, config=config, source=str(path), seconds=None)


class _TimedBlocks:
    """The decoded blocks of a file, adding up the seconds spent decoding them in ``seconds``."""

    def __init__(self, blocks: Iterator[np.ndarray]):
        self._blocks = blocks
        self.seconds = 0.0

    def __iter__(self) -> "_TimedBlocks":
        return self

    def __next__(self) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return next(self._blocks)
        finally:
            self.seconds += time.perf_counter() - t0


def store_rounded(frames: np.ndarray, *, config: FeatureConfig, source: str, seconds: float | None) -> np.ndarray:
    """``frames`` [T, n_mels] rounded to float16 and back to float32; too short raises.

    The store keeps float16; rounding the same way makes both paths feed equal input.
    Fewer than ``config.segment_frames`` frames raise
    :class:`~musicrep.errors.TooShortAudioError` naming ``source`` (and ``seconds`` of audio, if given).
    """
    frames = np.asarray(frames, dtype=np.float16).astype(np.float32)
    if frames.shape[0] < config.segment_frames:
        length = "" if seconds is None else f" ({seconds:.2f} s)"
        raise TooShortAudioError(
            source,
            f"{frames.shape[0]} frames{length}; needs at least {config.segment_frames} frames "
            f"({segment_seconds(config):.2f} s)",
        )
    return frames
