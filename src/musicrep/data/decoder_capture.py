"""Catching what C decoders print on ``stderr`` (:func:`capture_decoder_output`), so it never reaches the terminal.

libsndfile's MP3 decoder (mpg123) prints notes on C's ``stderr`` ("Note:
Illegal Audio-MPEG-Header ... Trying to resync"); they would pass ``-q`` and
cut into our own lines. :mod:`musicrep.data.audio` turns what is caught into
one debug line per file and the end of a failed file's reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
from typing import Iterator

# Around each libsndfile call, C's ``stderr`` is pointed at a temp file
# instead, and what lands there becomes one debug line per file.
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
                # deferred: fcntl exists on POSIX only, as does every capture mode
                import fcntl

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
