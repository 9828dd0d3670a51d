"""Decoding any common audio file to mono float32 at the feature rate.

soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3 with libsndfile >= 1.1)
is tried first; anything it cannot open (tracker modules, m4a, wma, ...) goes
through ``ffmpeg`` (:mod:`musicrep.data.ffmpeg_decode`), and so does the rest
of a file libsndfile stops reading in the middle (a truncated FLAC "loses
sync"), so its readable part is kept as a truncated WAV, OGG or MP3's is. Audio is read in blocks, mixed to mono, and
resampled with soxr's high-quality setting (the same resampler as
``librosa.load``'s default ``soxr_hq``), so memory stays bounded for long files
when the caller consumes :func:`stream_audio` block by block.

Every failure raises an :class:`~musicrep.errors.AudioError` subclass that names
the file: unreadable, empty, silent, NaN/inf samples, or too short.

What the decoders print (mpg123's "Note: Illegal Audio-MPEG-Header ... Trying
to resync" on C's stderr, ffmpeg's errors) never reaches the terminal: it
becomes one debug line per file and, when the file then fails, the end of the
error's reason (:mod:`musicrep.data.decoder_capture`). An MP3 that mpg123
complains about and then ends early, without an error, is finished by ffmpeg
as a truncated FLAC is.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from ..errors import (
    AudioError,
    EmptyAudioError,
    InvalidAudioError,
    SilentAudioError,
    TooShortAudioError,
    UnreadableAudioError,
)
from .decoder_capture import capture_decoder_output
from .ffmpeg_decode import BLOCK, FfmpegFailed, ffmpeg_blocks, ffmpeg_frames

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".m4a",
    ".aac", ".wma", ".mka", ".webm", ".xm", ".it", ".s3m", ".mod", ".mptm",
)
#: Peak amplitude below which a file counts as silent (-80 dBFS).
SILENCE_PEAK = 1e-4
_DECODER_LOCATION = re.compile(r"^\[[^\]]*\]\s*")  # mpg123's "[src/libmpg123/parse.c:wetwork():1349] "


def decoder_reason(said: list[str]) -> str:
    """The decoder's most telling line: its last error, else its last line, without source locations."""
    if not said:
        return ""
    errors = [s for s in said if "error" in s.lower()]
    return _DECODER_LOCATION.sub("", (errors or said)[-1])


def log_decoder_output(*, path: str | os.PathLike, said: list[str], limit: int = 8) -> None:
    """One debug line with what the decoders said about ``path`` (repeats dropped, at most ``limit`` lines)."""
    if not said:
        return
    distinct = list(dict.fromkeys(_DECODER_LOCATION.sub("", s) for s in said))
    more = f" (and {len(distinct) - limit} more)" if len(distinct) > limit else ""
    log.debug("%s: the decoder said: %s%s", path, " | ".join(distinct[:limit]), more)


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


#: A decoder that complained and then ended this many seconds before the
#: length the file declares stopped early (mpg123 gives up resyncing quietly);
#: ffmpeg is asked for the rest.
_SHORT_END_SECONDS = 0.1
_ENDED_EARLY = "it ended early"


def _soundfile_blocks(path: Path, sr: int, notes: list[str] | None, said: list[str]) -> Iterator[np.ndarray]:
    """Mono blocks at ``sr`` via libsndfile; raises sf.LibsndfileError/RuntimeError to fall back.

    When libsndfile stops in the middle of the file (a truncated FLAC: "flac
    decoder lost sync"; a damaged MP3 that mpg123 gives up on, with an error
    or, after complaining, by ending early), ffmpeg decodes the rest; what
    either could read is kept and a line saying how many seconds were kept
    goes to ``notes``. What the decoders print goes to ``said``.
    """
    with capture_decoder_output(into=said):
        fh = sf.SoundFile(str(path))
    with fh:
        native, channels, expected = fh.samplerate, fh.channels, fh.frames
        resampler = None if native == sr else soxr.ResampleStream(native, sr, 1, dtype="float32", quality="HQ")
        done = 0  # frames read at the native rate
        while True:
            try:
                with capture_decoder_output(into=said):
                    block = fh.read(BLOCK, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                if done == 0 and shutil.which("ffmpeg") is None:
                    raise  # nothing readable at all: the caller reports libsndfile's error
                stopped = str(exc).strip() or type(exc).__name__
                break
            done += len(block)
            last = len(block) < BLOCK
            # mpg123 can give up on a damaged MP3 without an error: it complains, then ends early
            ended_early = last and bool(said) and expected - done > _SHORT_END_SECONDS * native
            mono = _mono_at_sr(block, resampler, last=last and not ended_early)
            if len(mono):
                yield mono
            if ended_early:
                stopped = _ENDED_EARLY
                break
            if last:
                return
        yield from _rest_by_ffmpeg(path, resampler, channels=channels, native=native, expected=expected,
                                   done=done, stopped=stopped, notes=notes, said=said)


def _mono_at_sr(block: np.ndarray, resampler: soxr.ResampleStream | None, *, last: bool) -> np.ndarray:
    """[n, channels] frames at the file's rate -> mono float32 at the target rate (streamed resampling)."""
    mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
    return resampler.resample_chunk(mono, last=last) if resampler is not None else mono


def _rest_by_ffmpeg(path: Path, resampler: soxr.ResampleStream | None, *, channels: int, native: int, expected: int,
                    done: int, stopped: str, notes: list[str] | None, said: list[str]) -> Iterator[np.ndarray]:
    """The mono blocks after frame ``done``, where libsndfile stopped (``stopped`` says why), decoded by ffmpeg.

    Ends the resampled stream; a line saying how many seconds were kept goes
    to ``notes`` (and a warning to the log) unless nothing was lost.
    """
    failed_at = done
    why = stopped + (f"; decoder: {decoder_reason(said)}" if said else "")  # libsndfile's, before ffmpeg's
    try:
        for rest in ffmpeg_frames(path, channels=channels, samplerate=native, skip=done, said=said):
            done += len(rest)
            out = _mono_at_sr(rest, resampler, last=False)
            if len(out):
                yield out
    except FfmpegFailed as exc:  # a damaged tail: keep what came before it
        log.debug("%s: ffmpeg stopped early (%s)", path, exc)
    if done == 0 and stopped != _ENDED_EARLY:
        raise RuntimeError(stopped)  # nothing readable at all: the caller reports libsndfile's error
    tail = _mono_at_sr(np.zeros((0, channels), np.float32), resampler, last=True)
    if len(tail):
        yield tail
    if done == failed_at and stopped == _ENDED_EARLY:
        return  # ffmpeg found nothing more either: the declared length was off, nothing was lost
    note = (f"kept {done / native:.2f} s of {expected / native:.2f} s: libsndfile stopped at "
            f"{failed_at / native:.2f} s ({why})" + (", ffmpeg decoded the rest it could" if done > failed_at else ""))
    log.warning("%s: damaged audio, %s", path, note)
    if notes is not None:
        notes.append(note)


def stream_audio(
    path: str | os.PathLike, *, sr: int = 22050, min_samples: int = 0, notes: list[str] | None = None
) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of ``path`` resampled to ``sr``.

    The checks that need the whole signal (empty, silent, NaN/inf, too short)
    run as the blocks pass and raise at the end of the stream (NaN/inf at once),
    so a consumer must treat its partial result as invalid on an exception.
    A damaged file whose readable part is kept (a truncated FLAC) is not an
    error; a line saying how many seconds were kept goes to ``notes``.
    What the decoders print about the file (mpg123's resync notes, ffmpeg's
    errors) never reaches the terminal: it becomes one debug log line, and
    the reason of the error when the file then fails.

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
    said: list[str] = []
    try:
        yield from _checked_blocks(path, sr=sr, min_samples=min_samples, notes=notes, said=said)
    except AudioError as exc:
        reason = decoder_reason(said)
        if reason and reason not in exc.detail:  # ffmpeg's own failure already names its line
            raise type(exc)(path, "; ".join(filter(None, [exc.detail, f"decoder: {reason}"]))) from None
        raise
    finally:
        log_decoder_output(path=path, said=said)


def _checked_blocks(
    path: Path, *, sr: int, min_samples: int, notes: list[str] | None, said: list[str]
) -> Iterator[np.ndarray]:
    """:func:`stream_audio`'s blocks and checks, what the decoders print going to ``said``."""
    try:
        with capture_decoder_output(into=said):
            with sf.SoundFile(str(path)):
                pass
        blocks = _soundfile_blocks(path, sr, notes, said)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        blocks = ffmpeg_blocks(path, sr=sr, said=said)
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
