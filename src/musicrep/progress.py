"""Progress bars for top-level loops only; ``--quiet`` turns them off.

On a terminal a bar redraws itself in place. When stderr is a file or a pipe (a job
under ``nohup``, a CI log) a redraw would be a carriage return, so bars and log lines
run together on one line; there each refresh is written as a line of its own, at most
every 30 s.
"""

from __future__ import annotations

import io
import os
import sys

from tqdm.auto import tqdm

# None: follow the MUSICREP_QUIET environment variable, read when a bar starts
# (not at import, so a process that sets it after importing musicrep is obeyed)
_enabled: bool | None = None

#: Seconds between progress lines when stderr is not a terminal.
LOG_INTERVAL = 30.0


def set_enabled(enabled: bool | None) -> None:
    """Bars on or off for this process; None follows ``MUSICREP_QUIET`` again."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    """Whether bars are drawn: the last :func:`set_enabled`, else ``MUSICREP_QUIET`` unset or 0."""
    if _enabled is not None:
        return _enabled
    return os.environ.get("MUSICREP_QUIET", "") in ("", "0")


class _Lines(io.TextIOBase):
    """A stream for tqdm that turns every redraw into one plain line."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            part = part.strip()
            if part:
                self.stream.write(part + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def bar(iterable=None, **kwargs):
    """A tqdm bar on stderr, disabled when quiet; plain lines when stderr is not a terminal."""
    stream = kwargs.pop("file", sys.stderr)
    if _is_terminal(stream):
        kwargs.setdefault("dynamic_ncols", True)
        kwargs.setdefault("mininterval", 1.0)
    else:
        stream = _Lines(stream)
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        kwargs.setdefault("ncols", 100)
    return tqdm(iterable, file=stream, disable=not enabled(), **kwargs)
