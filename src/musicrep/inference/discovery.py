"""Finding the audio files to embed, and the one key that matches a file to its rows.

:func:`find_audio` expands files and folders into audio files (broken links kept so
that they are reported, not passed over); :func:`key_of` is the resolved path by
which catalog rows, table rows and indexed tracks are matched to a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..data.audio import AUDIO_EXTENSIONS
from ..errors import MusicrepError


def find_audio(paths: Iterable[str | Path], *, recursive: bool = True) -> list[Path]:
    """Expand files and folders into a sorted list of audio files.

    Files given by name are kept whatever their ending; folders contribute the
    files whose ending is in :data:`AUDIO_EXTENSIONS` (hidden files skipped),
    broken links included so that the caller reports them.
    A path that does not exist raises :class:`~musicrep.errors.MusicrepError`.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(_audio_in_folder(p, recursive=recursive))
        elif p.is_symlink():  # a broken link: the caller reports it as unreadable and goes on
            out.append(p)
        else:
            raise MusicrepError(f"{p}: no such file or folder")
    return out


def _audio_in_folder(folder: Path, *, recursive: bool) -> list[Path]:
    """The audio files of ``folder``, sorted; a broken link is kept so that it is reported
    (UnreadableAudioError), not silently passed over."""
    found = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(
        f for f in found
        if (f.is_file() or (f.is_symlink() and not f.exists()))
        and f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith(".")
    )


def key_of(path: str | Path) -> str:
    """How files are matched to catalog rows and table rows: the resolved path.

    A symbolic-link loop cannot be resolved (``Path.resolve`` raises
    ``RuntimeError``); its absolute path stands in, so the file reaches the
    decoder and is reported by name as unreadable, and the job goes on.
    """
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)
