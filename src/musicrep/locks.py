"""One writer per output folder: an exclusive, non-blocking ``flock`` per folder.

Two jobs writing one store, run, embeddings, index, report, sweep or work folder
interleave their files (a ``best.pt`` from one seed beside the split of another) and
both exit 0. Every command that writes a folder therefore holds :func:`folder_lock`
for it; a second writer fails at once with :class:`~musicrep.errors.FolderLockedError`
naming the holder's PID and command line.

The lock file sits beside the folder (``parent/.NAME.lock``), not inside it, so it
survives ``--overwrite`` deleting the folder and is never mistaken for an output. It
is never deleted: unlinking a lock file lets two processes hold locks on two
different files of the same name. The kernel releases an ``flock`` when its holder
exits, ``kill -9`` included, so a crashed job never leaves a stale lock.

Locks are re-entrant within a process (the main job locks its work folder and then
each stage locks its own output folder, sometimes the same one).
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import FolderLockedError

_HELD: dict[Path, list] = {}  # lock path -> [fd, depth]
_GUARD = threading.Lock()


def lock_path(folder: str | Path) -> Path:
    """The lock file of ``folder``: ``parent/.NAME.lock``."""
    folder = Path(os.path.abspath(folder))
    return folder.parent / f".{folder.name}.lock"


def holder(folder: str | Path) -> str:
    """Who holds (or last held) ``folder``'s lock, as ``"PID 123 (musicrep train ...)"``."""
    try:
        pid, _, command = lock_path(folder).read_text(encoding="utf-8").partition("\n")
    except OSError:
        return "an unknown process"
    pid = pid.strip()
    return f"PID {pid} ({command.strip()})" if pid else "an unknown process"


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the exclusive write lock of ``folder`` for the ``with`` block.

    Creates the folder's parent if needed (not the folder). Raises
    :class:`FolderLockedError` at once when another process holds it.
    """
    path = lock_path(folder)
    with _GUARD:
        held = _HELD.get(path)
        if held is not None:
            held[1] += 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise FolderLockedError(
                    f"{Path(folder)} is being written by {holder(folder)}; wait for that job to "
                    f"finish or stop it, or write to another folder"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n{' '.join(sys.argv)}\n".encode("utf-8", "replace"))
            _HELD[path] = [fd, 1]
    try:
        yield Path(folder)
    finally:
        with _GUARD:
            entry = _HELD[path]
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[path]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])
