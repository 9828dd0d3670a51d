"""The ffmpeg fallback decoder: float32 samples streamed from an ``ffmpeg`` pipe.

:mod:`musicrep.data.audio` asks ffmpeg for files libsndfile cannot open
(tracker modules, m4a, wma, ...) and for the rest of a file libsndfile stops
reading in the middle (a truncated FLAC).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UnreadableAudioError

#: Samples per block read from a file (by libsndfile, or as float32 from ffmpeg's pipe).
BLOCK = 1 << 17


class FfmpegFailed(Exception):
    """ffmpeg exited with an error; the message is its last line of output."""


def ffmpeg_pcm(path: Path, *, exe: str, output_args: list[str], said: list[str]) -> Iterator[np.ndarray]:
    """float32 samples ffmpeg writes for ``path`` (flat, interleaved), streamed from a pipe.

    What ffmpeg prints (``-v error``: its errors only) goes to ``said``.
    Raises ``FfmpegFailed`` (after the samples it gave) when ffmpeg exits with an error.
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
                chunk = proc.stdout.read(BLOCK * 4)
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
                raise FfmpegFailed(lines[-1] if lines else "failed")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def ffmpeg_frames(
    path: Path, *, channels: int, samplerate: int, skip: int, said: list[str]
) -> Iterator[np.ndarray]:
    """Frames ``skip`` onwards of ``path`` at its own rate, [n, channels] float32, decoded by ffmpeg.

    Used where libsndfile stops in the middle of a file: ffmpeg decodes the
    same samples (bit-exact for FLAC), so skipping the frames libsndfile gave
    continues the stream without a seam. Gives nothing when ffmpeg is not
    installed; raises :class:`FfmpegFailed` (after the frames it gave) where
    ffmpeg stops with an error.
    """
    exe = shutil.which("ffmpeg")
    if exe is None:
        return
    args = ["-ac", str(channels), "-ar", str(samplerate)]  # equal to the file's: no conversion
    to_skip = skip * channels
    pending = np.zeros(0, dtype=np.float32)
    for flat in ffmpeg_pcm(path, exe=exe, output_args=args, said=said):
        if to_skip:
            dropped = min(to_skip, len(flat))
            flat, to_skip = flat[dropped:], to_skip - dropped
        flat = np.concatenate([pending, flat]) if len(pending) else flat
        usable = len(flat) - len(flat) % channels
        pending = flat[usable:]
        if usable:
            yield flat[:usable].reshape(-1, channels)


def ffmpeg_blocks(path: Path, *, sr: int, said: list[str]) -> Iterator[np.ndarray]:
    """Mono blocks at ``sr`` decoded by ffmpeg (soxr resampler), streamed from a pipe."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise UnreadableAudioError(path, "soundfile cannot read it and ffmpeg is not installed (apt-get install ffmpeg)")
    args = ["-af", "aresample=resampler=soxr:precision=28", "-ac", "1", "-ar", str(sr)]
    try:
        yield from ffmpeg_pcm(path, exe=exe, output_args=args, said=said)
    except FfmpegFailed as exc:
        raise UnreadableAudioError(path, f"ffmpeg: {exc}") from None
