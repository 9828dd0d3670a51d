"""Decoding any common audio file to mono float32 at the feature rate.

soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3 with libsndfile >= 1.1)
is tried first; anything it cannot open (tracker modules, m4a, wma, ...) goes
through ``ffmpeg``. Audio is read in blocks, mixed to mono, and resampled with
soxr's high-quality setting (the same resampler as ``librosa.load``'s default
``soxr_hq``), so memory stays bounded for long files when the caller consumes
:func:`stream_audio` block by block.

Every failure raises an :class:`~musicrep.errors.AudioError` subclass that names
the file: unreadable, empty, silent, NaN/inf samples, or too short.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import (
    AudioError,
    EmptyAudioError,
    InvalidAudioError,
    SilentAudioError,
    TooShortAudioError,
    UnreadableAudioError,
)

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".m4a",
    ".aac", ".wma", ".mka", ".webm", ".xm", ".it", ".s3m", ".mod", ".mptm",
)
#: Peak amplitude below which a file counts as silent (-80 dBFS).
SILENCE_PEAK = 1e-4
_BLOCK = 1 << 17  # samples per block read from the file


def _check_path(path: Path) -> None:
    if path.is_dir():
        raise UnreadableAudioError(path, "is a directory, not a file")
    if not path.exists():
        detail = "broken symbolic link" if path.is_symlink() else "file not found"
        raise UnreadableAudioError(path, detail)
    if not os.access(path, os.R_OK):
        raise UnreadableAudioError(path, "permission denied")
    if path.stat().st_size == 0:
        raise EmptyAudioError(path, "the file is 0 bytes")


def _soundfile_blocks(path: Path, sr: int) -> Iterator[np.ndarray]:
    """Mono blocks at ``sr`` via libsndfile; raises sf.LibsndfileError/RuntimeError to fall back."""
    with sf.SoundFile(str(path)) as fh:
        native = fh.samplerate
        resampler = None if native == sr else soxr.ResampleStream(native, sr, 1, dtype="float32", quality="HQ")
        while True:
            block = fh.read(_BLOCK, dtype="float32", always_2d=True)
            last = len(block) < _BLOCK
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if len(mono):
                yield mono
            if last:
                return


def _ffmpeg_blocks(path: Path, sr: int) -> Iterator[np.ndarray]:
    """Mono blocks at ``sr`` decoded by ffmpeg (soxr resampler), streamed from a pipe."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise UnreadableAudioError(path, "soundfile cannot read it and ffmpeg is not installed (apt-get install ffmpeg)")
    cmd = [
        exe, "-nostdin", "-v", "error", "-i", str(path), "-vn",
        "-af", "aresample=resampler=soxr:precision=28", "-ac", "1", "-ar", str(sr),
        "-f", "f32le", "-",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        pending = b""
        while True:
            chunk = proc.stdout.read(_BLOCK * 4)
            if not chunk:
                break
            chunk = pending + chunk
            usable = len(chunk) - len(chunk) % 4
            pending = chunk[usable:]
            if usable:
                yield np.frombuffer(chunk[:usable], dtype="<f4").copy()
        err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
        if proc.wait() != 0:
            raise UnreadableAudioError(path, f"ffmpeg: {err.splitlines()[-1] if err else 'failed'}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def stream_audio(
    path: str | os.PathLike, *, sr: int = 22050, min_samples: int = 0
) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of ``path`` resampled to ``sr``.

    The checks that need the whole signal (empty, silent, NaN/inf, too short)
    run as the blocks pass and raise at the end of the stream (NaN/inf at once),
    so a consumer must treat its partial result as invalid on an exception.

    Parameters
    ----------
    path : audio file
    sr : target sample rate in Hz
    min_samples : raise TooShortAudioError when fewer samples come out

    Yields
    ------
    np.ndarray [shape=(n,), dtype=float32]
    """
    path = Path(path)
    _check_path(path)
    try:
        with sf.SoundFile(str(path)):
            pass
        blocks = _soundfile_blocks(path, sr)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        blocks = _ffmpeg_blocks(path, sr)
    total = 0
    peak = 0.0
    try:
        for block in blocks:
            if not np.isfinite(block).all():
                raise InvalidAudioError(path)
            total += len(block)
            peak = max(peak, float(np.abs(block).max()))
            yield block
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise UnreadableAudioError(path, str(exc).strip() or type(exc).__name__) from None
    if total == 0:
        raise EmptyAudioError(path, "decoding gave 0 samples")
    if peak < SILENCE_PEAK:
        raise SilentAudioError(path, f"peak {peak:.2g} < {SILENCE_PEAK:g}")
    if total < min_samples:
        raise TooShortAudioError(path, f"{total / sr:.2f} s < {min_samples / sr:.2f} s")


def load_audio(path: str | os.PathLike, *, sr: int = 22050, min_samples: int = 0) -> np.ndarray:
    """Whole file as mono float32 at ``sr`` (see :func:`stream_audio` for the checks).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    blocks = list(stream_audio(path, sr=sr, min_samples=min_samples))
    return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality (soxr HQ) resampling of a mono float32 signal."""
    y = np.asarray(y, dtype=np.float32)
    if orig_sr == target_sr:
        return y
    return soxr.resample(y, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def to_mono(audio: np.ndarray, *, source: str = "<array>") -> np.ndarray:
    """An audio array as mono float32: channels averaged, integer PCM scaled to [-1, 1).

    Parameters
    ----------
    audio : np.ndarray [shape=(n,), (n, channels) as soundfile gives, or (channels, n)
        as librosa gives; the shorter axis is taken as the channels]
    source : names the array in errors

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
        Raises EmptyAudioError for no samples, InvalidAudioError for another
        shape or dtype, or for NaN / infinite samples.
    """
    y = np.asarray(audio)
    if y.ndim not in (1, 2):
        raise InvalidAudioError(source, f"expected a 1-D or 2-D array, got shape {y.shape}")
    if y.size == 0:
        raise EmptyAudioError(source)
    # Scale integer PCM before mixing: the mean of ints is float64 and would
    # otherwise skip the scaling.
    if np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.float32) / float(np.iinfo(y.dtype).max + 1)
    elif not np.issubdtype(y.dtype, np.floating):
        raise InvalidAudioError(source, f"unsupported dtype {y.dtype}")
    y = y.astype(np.float32, copy=False)
    if y.ndim == 2:
        y = y.mean(axis=0 if y.shape[0] < y.shape[1] else 1, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        raise InvalidAudioError(source)
    return y
