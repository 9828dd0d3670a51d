"""Progress bars for top-level loops only; ``--quiet`` turns them off."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

_enabled = os.environ.get("MUSICREP_QUIET", "") in ("", "0")


def set_enabled(enabled: bool) -> None:
    global _enabled
    _enabled = enabled


def bar(iterable=None, **kwargs):
    """A tqdm bar on stderr, disabled when quiet."""
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, disable=not _enabled, **kwargs)
