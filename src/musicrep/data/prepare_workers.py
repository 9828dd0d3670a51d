"""The worker side of :func:`~musicrep.data.prepare.prepare`: one track decoded into its part files, on a process pool.

:func:`compute_track` turns one audio file into its log-mel; a worker writes
the result as the track's part files (or records why it could not). The pool
(:func:`run_pool`) runs the workers so that they die with the process that
started them and a decoder that crashes its worker costs only its own track.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import hashlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from ..config import FeatureConfig, to_dict
from ..errors import DISK_FULL_ERRNOS, AudioError, StoreError
from ..io import atomic_path, atomic_write_json
from ..progress import bar
from .audio import stream_audio
from .catalog import Track
from .features import log_mel_stream, min_samples_for
from .store_files import DTYPE

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: What a worker returns: (track_id, n_frames or None when unusable, reason, detail).
WorkResult = tuple[str, int | None, str, str]


def compute_track(
    path: str, *, config: FeatureConfig, digest: hashlib._Hash | None = None, notes: list[str] | None = None
) -> np.ndarray:
    """Decode ``path`` and return its log-mel, float32 [T, n_mels] (streamed, bounded memory).

    Parameters
    ----------
    path : audio file
    config : front-end settings
    digest : a ``hashlib`` object updated with the decoded mono samples at
        ``config.sample_rate`` (float32, little-endian), for duplicate detection
    notes : receives a line per damaged file whose readable part was kept
    """
    blocks = stream_audio(path, sr=config.sample_rate, min_samples=min_samples_for(config), notes=notes)
    if digest is not None:
        blocks = _hashed(blocks, digest)
    chunks = list(log_mel_stream(blocks, config=config))
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def _hashed(blocks: Iterable[np.ndarray], digest: hashlib._Hash) -> Iterator[np.ndarray]:
    for block in blocks:
        digest.update(np.ascontiguousarray(block, dtype="<f4").tobytes())
        yield block


# ----------------------------------------------------------------------------- one track


def record_error(parts: Path, *, name: str, track_id: str, path: str, reason: str, detail: str) -> WorkResult:
    """Mark a track as unusable (its ``.err.json`` part) and return the worker's error result."""
    atomic_write_json(parts / f"{name}.err.json", obj={"track_id": track_id, "path": path, "reason": reason, "detail": detail})
    return track_id, None, reason, detail


def _work(track_id: str, path: str, name: str, parts_dir: str, config_dict: dict) -> WorkResult:
    """Worker: one track -> part files ``name.npy`` then ``name.json`` (the marker, written last).

    Returns (track_id, n_frames or None, reason, detail).
    """
    config = FeatureConfig(**config_dict)
    parts = Path(parts_dir)
    digest = hashlib.sha1()
    notes: list[str] = []
    try:
        mel = compute_track(path, config=config, digest=digest, notes=notes)
    except AudioError as exc:
        return record_error(parts, name=name, track_id=track_id, path=path, reason=exc.reason, detail=exc.detail)
    except Exception as exc:  # one bad file never kills the job
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            raise  # the disk, not the track: never recorded as the track's fault
        return record_error(parts, name=name, track_id=track_id, path=path, reason="unexpected error",
                            detail=f"{type(exc).__name__}: {exc}")
    with atomic_path(parts / f"{name}.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, mel.astype(DTYPE))
    atomic_write_json(parts / f"{name}.json", obj={
        "track_id": track_id, "path": path, "n_frames": int(mel.shape[0]),
        "content_hash": digest.hexdigest(), "notes": notes,
    })
    return track_id, int(mel.shape[0]), "", ""


# ----------------------------------------------------------------------------- worker processes


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when ``parent_pid`` dies, ``kill -9`` included.

    Pool workers block on a queue whose other end they hold themselves, so a
    parent killed without cleanup would leave them alive for good. On Linux
    the kernel sends SIGKILL (PR_SET_PDEATHSIG); a thread that watches the
    parent PID covers other systems and a parent that died before the prctl.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _init_worker(parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    # One BLAS/FFT thread per worker: with a pool already using every core,
    # nested threads oversubscribe them (measured: 3x slower per track).
    threadpool_limits(1)


def _start_method() -> str:
    """``fork`` when it is safe, else ``spawn``.

    Forked workers start in milliseconds, spawned ones re-import numpy/scipy
    (~0.3 s, most of a small job). Forking a process that runs torch's OpenMP
    threads can deadlock the child, so once torch is loaded (the main job, a
    notebook) the workers are spawned.
    """
    if "torch" in sys.modules or "fork" not in mp.get_all_start_methods():
        return "spawn"
    return "fork"


def _ping() -> bool:
    return True


# ----------------------------------------------------------------------------- the pool


def run_pool(todo: list[Track], *, names: dict[str, str], parts: Path, config: FeatureConfig, workers: int) -> None:
    """Process ``todo`` on a process pool; a crashed worker is retried once, then the track is an error.

    Parameters
    ----------
    todo : the tracks to decode, in catalog order
    names : track id -> its part file stem
    parts : the store's ``parts/`` folder
    config : front-end settings
    workers : processes; 0 processes the tracks in this process (no isolation
        from a crashing decoder, but no process start-up either)
    """
    progress = bar(total=len(todo), desc="prepare", unit="track")
    cfg = to_dict(config)
    if workers == 0:
        for t in todo:
            _finished(progress, t, *_work(t.track_id, t.path, names[t.track_id], str(parts), cfg)[1:])
    else:
        _run_rounds(todo, names, parts, cfg, workers, progress)
    progress.close()


def _finished(progress: tqdm, track: Track, n: int | None, reason: str, detail: str) -> None:
    if n is None:
        log.warning("skipped %s: %s%s", track.path, reason, f" ({detail})" if detail else "")
    progress.update(1)


def _run_rounds(todo: list[Track], names: dict[str, str], parts: Path, cfg: dict, workers: int,
                progress: tqdm) -> None:
    """Rounds of pools until every track is done or charged with a crash.

    A worker that dies breaks every pending future, so a break charges nobody
    at first: the unfinished tracks are retried on one worker, where tasks run
    in submission order and the first broken future is the track that crashed.
    Only that track is recorded; the rest go back to the full pool.
    """
    pending = list(todo)
    round_workers = workers
    while pending:
        isolated = round_workers == 1
        pending = _run_round(pending, names, parts, cfg, round_workers, progress)
        if pending and not isolated:
            log.warning("a worker process died; retrying %d unfinished track(s) one at a time", len(pending))
        round_workers = workers if isolated else 1


def _run_round(pending: list[Track], names: dict[str, str], parts: Path, cfg: dict, round_workers: int,
               progress: tqdm) -> list[Track]:
    """One pool of ``round_workers`` over ``pending``; returns the tracks a worker crash left unfinished."""
    ctx = mp.get_context(_start_method())
    with cf.ProcessPoolExecutor(max_workers=round_workers, mp_context=ctx, initializer=_init_worker,
                                initargs=(os.getpid(),)) as pool:
        try:
            pool.submit(_ping).result()
        except cf.process.BrokenProcessPool:
            raise StoreError(
                "could not start worker processes (a script read from stdin or an unguarded "
                "__main__ cannot be re-imported by them); pass workers=0 to prepare in this process"
            ) from None
        futures = {pool.submit(_work, t.track_id, t.path, names[t.track_id], str(parts), cfg): t for t in pending}
        try:
            return _collect(futures, isolated=round_workers == 1, names=names, parts=parts, progress=progress)
        except BaseException:
            for fut in futures:  # a full disk or Ctrl-C: do not decode the rest first
                fut.cancel()
            raise


def _collect(futures: dict[cf.Future, Track], *, isolated: bool, names: dict[str, str], parts: Path,
             progress: tqdm) -> list[Track]:
    """Wait for ``futures``; the tracks to retry after a crash (isolated: the first broken one is recorded)."""
    retry: list[Track] = []
    culprit_found = False
    # In submission order when isolated (to find the culprit), else as they finish.
    for fut in (futures if isolated else cf.as_completed(futures)):
        track = futures[fut]
        try:
            result = fut.result()
        except cf.process.BrokenProcessPool:
            if not isolated or culprit_found:
                retry.append(track)
                continue
            culprit_found = True
            result = record_error(parts, name=names[track.track_id], track_id=track.track_id, path=track.path,
                                  reason="decoder crashed", detail="the worker process died on it")
        _finished(progress, track, *result[1:])
    return retry
