"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A reader never sees a half-written file: it sees the old one or the new one.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files follow the umask
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def remove_stale_temps(path: str | Path, *, older_than: float) -> int:
    """Delete the temp files :func:`atomic_path` left beside ``path`` when a run was killed.

    Only files last modified before ``older_than`` (a ``time.time()`` value, e.g.
    the start of the current job) go, so another process's write in progress
    is left alone. Returns how many were removed.
    """
    path = Path(path)
    removed = 0
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if tmp.stat().st_mtime < older_than:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def atomic_write_bytes(path: str | Path, *, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, *, text: str) -> None:
    atomic_write_bytes(path, data=text.encode("utf-8"))


def atomic_write_json(path: str | Path, *, obj) -> None:
    atomic_write_text(path, text=json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_csv(
    path: str | Path, *, rows: Iterable[Mapping], fieldnames: Sequence[str]
) -> None:
    """Write dict rows as CSV (UTF-8, header first), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fieldnames})
    atomic_write_text(path, text=buf.getvalue())
