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

What the decoders print (mpg123's "Note: Illegal Audio-MPEG-Header ... Trying
to resync" on C's stderr, ffmpeg's errors) never reaches the terminal: it
becomes one debug line per file and, when the file then fails, the end of the
error's reason (:func:`capture_decoder_output`). An MP3 that mpg123 complains
about and then ends early, without an error, is finished by ffmpeg as a
truncated FLAC is.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
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

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".m4a",
    ".aac", ".wma", ".mka", ".webm", ".xm", ".it", ".s3m", ".mod", ".mptm",
)
#: Peak amplitude below which a file counts as silent (-80 dBFS).
SILENCE_PEAK = 1e-4
_BLOCK = 1 << 17  # samples per block read from the file


# --------------------------------------------------------------------------- decoder chatter
#
# libsndfile's MP3 decoder (mpg123) prints notes on C's ``stderr`` ("Note:
# Illegal Audio-MPEG-Header ... Trying to resync"); they would pass ``-q`` and
# cut into our own lines. Around each libsndfile call, C's ``stderr`` is pointed
# at a temp file instead, and what lands there becomes one debug line per file.
#
# "stream" (glibc, macOS): the C global ``FILE *stderr`` is swapped. Python
# writes ``sys.stderr`` to file descriptor 2 itself, never through that FILE,
# so log lines and progress bars of other threads still reach the terminal;
# concurrent captures share one temp file (reference count), so decode threads
# stay parallel (a line printed while two files decode may be logged with
# both). "fd" (other C libraries): descriptor 2 itself is redirected, which
# would also swallow other threads' lines, so only in multiprocessing workers
# (musicrep's pool workers decode in their one busy thread). Elsewhere (Windows,
# musl outside workers) nothing is captured.

_DECODER_LOCATION = re.compile(r"^\[[^\]]*\]\s*")  # mpg123's "[src/libmpg123/parse.c:wetwork():1349] "


class _CapturedStderr:
    """Process-wide state of the capture (one temp file, a depth count)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode: str | None = None  # "stream", "fd" or "" (nothing), chosen on first use
        self.depth = 0
        self.sink = -1  # temp file, O_APPEND
        self.saved: int | None = None  # the FILE* ("stream") or a duplicate of fd 2 ("fd") to restore
        self.slot: ctypes.c_void_p | None = None  # C's ``stderr`` variable
        self.stream: int | None = None  # FILE* writing to ``sink``; never closed, another thread may hold it

    def choose(self) -> str:
        if os.name != "posix":
            return ""
        if sys.platform == "darwin" or platform.libc_ver()[0] == "glibc":
            try:  # musl's stderr is a constant: only C libraries known to have a writable one
                libc = ctypes.CDLL(None)
                self.slot = ctypes.c_void_p.in_dll(libc, "__stderrp" if sys.platform == "darwin" else "stderr")
                self._fdopen, self._setvbuf = libc.fdopen, libc.setvbuf
                self._fdopen.restype, self._fdopen.argtypes = ctypes.c_void_p, [ctypes.c_int, ctypes.c_char_p]
                self._setvbuf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t]
                return "stream"
            except (OSError, ValueError, AttributeError):
                self.slot = None
        return "fd" if multiprocessing.parent_process() is not None else ""

    def enter(self) -> int | None:
        """Start capturing; the temp file's size at the start, or None when not capturing."""
        with self.lock:
            if self.mode is None:
                self.mode = self.choose()
            if not self.mode:
                return None
            if self.sink < 0:
                import fcntl  # POSIX only, as is every mode

                with tempfile.TemporaryFile() as fh:  # the descriptor outlives the file object
                    self.sink = os.dup(fh.fileno())
                fcntl.fcntl(self.sink, fcntl.F_SETFL, fcntl.fcntl(self.sink, fcntl.F_GETFL) | os.O_APPEND)
            if self.depth == 0:
                if self.mode == "stream":
                    if self.stream is None:
                        self.stream = self._fdopen(os.dup(self.sink), b"a")
                        self._setvbuf(self.stream, None, 2, 0)  # _IONBF: every write reaches the file
                    self.saved, self.slot.value = self.slot.value, self.stream
                else:
                    if sys.stderr is not None:
                        sys.stderr.flush()  # our own pending text goes to the terminal first
                    self.saved = os.dup(2)
                    os.dup2(self.sink, 2)
            self.depth += 1
            return os.fstat(self.sink).st_size

    def leave(self, start: int) -> str:
        """Stop capturing; what C code wrote to ``stderr`` since ``start``."""
        with self.lock:
            end = os.fstat(self.sink).st_size
            text = os.pread(self.sink, end - start, start) if end > start else b""
            self.depth -= 1
            if self.depth == 0:
                self._restore()
                os.ftruncate(self.sink, 0)  # O_APPEND: later writes start again at 0
        return text.decode("utf-8", "replace")

    def _restore(self) -> None:
        if self.mode == "stream":
            self.slot.value = self.saved
        else:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        self.saved = None

    def after_fork(self) -> None:
        """In a forked child: undo a capture another parent thread had open, start afresh."""
        self.lock = threading.Lock()
        if self.depth:
            self._restore()
        self.depth = 0
        if self.sink >= 0:  # shared with the parent: the child gets its own
            os.close(self.sink)
        self.sink, self.stream = -1, None


_CAPTURE = _CapturedStderr()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CAPTURE.after_fork)


@contextlib.contextmanager
def capture_decoder_output(*, into: list[str]) -> Iterator[None]:
    """Catch what C decoders print on ``stderr`` inside the block; its lines go to ``into``.

    Wrap only calls into libsndfile (opening, reading, ``sf.info``), never a
    ``yield``: while the block runs, C ``stderr`` output of the whole process
    is caught. Our own log lines, from any thread, are never caught (see the
    comment above :class:`_CapturedStderr`).

    Parameters
    ----------
    into : receives one string per non-empty line the decoder printed
    """
    start = _CAPTURE.enter()
    try:
        yield
    finally:
        if start is not None:
            into.extend(line.strip() for line in _CAPTURE.leave(start).splitlines() if line.strip())


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


def _ffmpeg_pcm(path: Path, exe: str, output_args: list[str], said: list[str]) -> Iterator[np.ndarray]:
    """float32 samples ffmpeg writes for ``path`` (flat, interleaved), streamed from a pipe.

    What ffmpeg prints (``-v error``: its errors only) goes to ``said``.
    Raises ``_FfmpegFailed`` (after the samples it gave) when ffmpeg exits with an error.
    """
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", *output_args, "-f", "f32le", "-"]
    # stderr to a file, not a pipe: a damaged file can make ffmpeg print one line
    # per frame, and a full pipe nobody reads while we read stdout would hang both.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
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
            code = proc.wait()
            errors.seek(0)
            lines = [ln.strip() for ln in errors.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            said.extend(lines[:50] + lines[-1:] if len(lines) > 50 else lines)  # a line per bad frame adds nothing
            if code != 0:
                raise _FfmpegFailed(lines[-1] if lines else "failed")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


class _FfmpegFailed(Exception):
    """ffmpeg exited with an error; the message is its last line of output."""


def _ffmpeg_rest(
    path: Path, *, channels: int, samplerate: int, skip: int, said: list[str]
) -> Iterator[np.ndarray]:
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
        for flat in _ffmpeg_pcm(path, exe, args, said):
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

        def mono_at_sr(block: np.ndarray, last: bool) -> np.ndarray:
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            return resampler.resample_chunk(mono, last=last) if resampler is not None else mono

        while True:
            try:
                with capture_decoder_output(into=said):
                    block = fh.read(_BLOCK, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                if done == 0 and shutil.which("ffmpeg") is None:
                    raise  # nothing readable at all: the caller reports libsndfile's error
                stopped = str(exc).strip() or type(exc).__name__
                break
            done += len(block)
            last = len(block) < _BLOCK
            # mpg123 can give up on a damaged MP3 without an error: it complains, then ends early
            ended_early = last and bool(said) and expected - done > _SHORT_END_SECONDS * native
            mono = mono_at_sr(block, last and not ended_early)
            if len(mono):
                yield mono
            if ended_early:
                stopped = _ENDED_EARLY
                break
            if last:
                return
        # libsndfile stopped before the end of the file: ffmpeg decodes what follows
        failed_at = done
        why = stopped + (f"; decoder: {decoder_reason(said)}" if said else "")  # libsndfile's, before ffmpeg's
        for rest in _ffmpeg_rest(path, channels=channels, samplerate=native, skip=done, said=said):
            done += len(rest)
            out = mono_at_sr(rest, last=False)
            if len(out):
                yield out
        if done == 0 and stopped != _ENDED_EARLY:
            raise RuntimeError(stopped)  # nothing readable at all: the caller reports libsndfile's error
        tail = mono_at_sr(np.zeros((0, channels), np.float32), last=True)
        if len(tail):
            yield tail
        if done == failed_at and stopped == _ENDED_EARLY:
            return  # ffmpeg found nothing more either: the declared length was off, nothing was lost
        note = (f"kept {done / native:.2f} s of {expected / native:.2f} s: libsndfile stopped at "
                f"{failed_at / native:.2f} s ({why})" + (", ffmpeg decoded the rest it could" if done > failed_at else ""))
        log.warning("%s: damaged audio, %s", path, note)
        if notes is not None:
            notes.append(note)


def _ffmpeg_blocks(path: Path, sr: int, said: list[str]) -> Iterator[np.ndarray]:
    """Mono blocks at ``sr`` decoded by ffmpeg (soxr resampler), streamed from a pipe."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise UnreadableAudioError(path, "soundfile cannot read it and ffmpeg is not installed (apt-get install ffmpeg)")
    args = ["-af", "aresample=resampler=soxr:precision=28", "-ac", "1", "-ar", str(sr)]
    try:
        yield from _ffmpeg_pcm(path, exe, args, said)
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
        blocks = _ffmpeg_blocks(path, sr, said)
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
