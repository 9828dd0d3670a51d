"""Decoding any common audio file to mono float32 at the feature rate.

soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3 with libsndfile >= 1.1)
is tried first; anything it cannot open (tracker modules, m4a, wma, ...) goes
through ``ffmpeg``, and so does the rest of a file libsndfile stops reading in
the middle (a truncated FLAC "loses sync"), so its readable part is kept as a
truncated WAV, OGG or MP3's is. Audio is read in blocks, mixed to mono, and
resampled with soxr's high-quality setting (the same resampler as
``librosa.load``'s default ``soxr_hq``), so memory stays bounded for long files
when the caller consumes :func:`stream_audio` block by block.

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


def _ffmpeg_pcm(path: Path, exe: str, output_args: list[str]) -> Iterator[np.ndarray]:
    """float32 samples ffmpeg writes for ``path`` (flat, interleaved), streamed from a pipe.

    Raises ``_FfmpegFailed`` (after the samples it gave) when ffmpeg exits with an error.
    """
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", *output_args, "-f", "f32le", "-"]
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
            raise _FfmpegFailed(err.splitlines()[-1] if err else "failed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class _FfmpegFailed(Exception):
    """ffmpeg exited with an error; the message is its last line of output."""


def _ffmpeg_rest(path: Path, *, channels: int, samplerate: int, skip: int) -> Iterator[np.ndarray]:
    """Frames ``skip`` onwards of ``path`` at its own rate, [n, channels] float32, decoded by ffmpeg.

    Used where libsndfile stops in the middle of a file: ffmpeg decodes the
    same samples (bit-exact for FLAC), so skipping the frames libsndfile gave
    continues the stream without a seam. Stops quietly where ffmpeg stops.
    """
    exe = shutil.which("ffmpeg")
    if exe is None:
        return
    args = ["-ac", str(channels), "-ar", str(samplerate)]  # equal to the file's: no conversion
    to_skip = skip * channels
    pending = np.zeros(0, dtype=np.float32)
    try:
        for flat in _ffmpeg_pcm(path, exe, args):
            if to_skip:
                dropped = min(to_skip, len(flat))
                flat, to_skip = flat[dropped:], to_skip - dropped
            flat = np.concatenate([pending, flat]) if len(pending) else flat
            usable = len(flat) - len(flat) % channels
            pending = flat[usable:]
            if usable:
                yield flat[:usable].reshape(-1, channels)
    except _FfmpegFailed as exc:  # a damaged tail: keep what came before it
        log.debug("%s: ffmpeg stopped early (%s)", path, exc)


def _soundfile_blocks(path: Path, sr: int, notes: list[str] | None = None) -> Iterator[np.ndarray]:
    """Mono blocks at ``sr`` via libsndfile; raises sf.LibsndfileError/RuntimeError to fall back.

    When libsndfile stops in the middle of the file (a truncated FLAC: "flac
    decoder lost sync"), ffmpeg decodes the rest; what either could read is
    kept and a line saying how many seconds were kept goes to ``notes``.
    """
    with sf.SoundFile(str(path)) as fh:
        native, channels, expected = fh.samplerate, fh.channels, fh.frames
        resampler = None if native == sr else soxr.ResampleStream(native, sr, 1, dtype="float32", quality="HQ")
        done = 0  # frames read at the native rate

        def mono_at_sr(block: np.ndarray, last: bool) -> np.ndarray:
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            return resampler.resample_chunk(mono, last=last) if resampler is not None else mono

        while True:
            try:
                block = fh.read(_BLOCK, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                failed_at = done
                for rest in _ffmpeg_rest(path, channels=channels, samplerate=native, skip=done):
                    done += len(rest)
                    out = mono_at_sr(rest, last=False)
                    if len(out):
                        yield out
                if done == 0:
                    raise  # nothing readable at all: the caller reports libsndfile's error
                tail = mono_at_sr(np.zeros((0, channels), np.float32), last=True)
                if len(tail):
                    yield tail
                note = (f"kept {done / native:.2f} s of {expected / native:.2f} s: libsndfile stopped at "
                        f"{failed_at / native:.2f} s ({str(exc).strip() or type(exc).__name__})"
                        + (", ffmpeg decoded the rest it could" if done > failed_at else ""))
                log.warning("%s: damaged audio, %s", path, note)
                if notes is not None:
                    notes.append(note)
                return
            done += len(block)
            last = len(block) < _BLOCK
            mono = mono_at_sr(block, last)
            if len(mono):
                yield mono
            if last:
                return


def _ffmpeg_blocks(path: Path, sr: int) -> Iterator[np.ndarray]:
    """Mono blocks at ``sr`` decoded by ffmpeg (soxr resampler), streamed from a pipe."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise UnreadableAudioError(path, "soundfile cannot read it and ffmpeg is not installed (apt-get install ffmpeg)")
    args = ["-af", "aresample=resampler=soxr:precision=28", "-ac", "1", "-ar", str(sr)]
    try:
        yield from _ffmpeg_pcm(path, exe, args)
    except _FfmpegFailed as exc:
        raise UnreadableAudioError(path, f"ffmpeg: {exc}") from None


def stream_audio(
    path: str | os.PathLike, *, sr: int = 22050, min_samples: int = 0, notes: list[str] | None = None
) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of ``path`` resampled to ``sr``.

    The checks that need the whole signal (empty, silent, NaN/inf, too short)
    run as the blocks pass and raise at the end of the stream (NaN/inf at once),
    so a consumer must treat its partial result as invalid on an exception.
    A damaged file whose readable part is kept (a truncated FLAC) is not an
    error; a line saying how many seconds were kept goes to ``notes``.

    Parameters
    ----------
    path : audio file
    sr : target sample rate in Hz
    min_samples : raise TooShortAudioError when fewer samples come out
    notes : if given, a list that receives one line per damaged file whose
        readable part was kept

    Yields
    ------
    np.ndarray [shape=(n,), dtype=float32]
    """
    path = Path(path)
    _check_path(path)
    try:
        with sf.SoundFile(str(path)):
            pass
        blocks = _soundfile_blocks(path, sr, notes)
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
