"""The on-disk feature store: every track's log-mel in one float16 memmap.

Layout of ``STORE/`` (see docs/architecture.md)::

    frames.f16   float16 [total_frames, n_mels], C order, raw (np.memmap), append-only
    index.csv    the stored tracks' catalog rows + content_hash, offset, n_frames
    errors.csv   track_id, path, reason, detail: one row per track that could not be
                 used, or that was stored from the readable part of a damaged file
    store.json   feature settings, their hash, total_frames, n_mels, version
    DONE         written last; a store without it is incomplete
    parts/       only while preparing: per finished track a .npy and its .json (or an .err.json)
    shard.json   only in the store of one shard of a catalog (``prepare(..., shard=(K, N))``)
    merge.json   only in a store made by :func:`~musicrep.data.shards.merge_stores`: what it joined

:func:`prepare` decodes every track once on a process pool and writes each
result as its own part file (atomically), so a killed run resumes where it
stopped. A part is named by a hash of the track id, the file's path, size and
modification time and the feature settings, so a resume recomputes a track
whose file changed. When every track is done, the parts are appended to
``frames.f16`` and removed. A rerun with more tracks appends them; a rerun with
nothing new does nothing; tracks stored before stay stored. Only one process
writes a store at a time (:func:`~musicrep.locks.folder_lock`); worker
processes die with the process that started them. Tracks are stored in
catalog order, so the N shard stores of a catalog (:mod:`musicrep.data.shards`)
merge into the store one ``prepare`` of the whole catalog writes.

``content_hash`` is the SHA-1 of a track's decoded, resampled mono samples, so
the same audio under two ids (or in two lossless containers) is found by
:func:`duplicate_groups`. :class:`FeatureStore` checks every header field and
index row against the settings' ranges and the frames file's size before it
reads a frame.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import ctypes
import hashlib
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..config import FeatureConfig, _from_dict, to_dict
from ..errors import DISK_FULL_ERRNOS, AudioError, ConfigError, StoreError
from ..io import atomic_path, atomic_write_csv, atomic_write_json, atomic_write_text
from ..locks import folder_lock
from ..progress import bar
from .audio import stream_audio
from .catalog import COLUMNS, Catalog, Track, track_from_row
from .features import log_mel_stream

log = logging.getLogger(__name__)

VERSION = 1
DTYPE = np.float16
ERROR_COLUMNS = ("track_id", "path", "reason", "detail")
#: The columns index.csv holds after the catalog's own.
INDEX_TAIL = ("content_hash", "offset", "n_frames")
#: errors.csv reason of a track stored from the readable part of a damaged file.
PARTIAL_REASON = "damaged audio, readable part kept"
_HEX40 = re.compile(r"[0-9a-f]{40}")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _part_name(track: Track, feature_hash: str) -> str:
    """The part file stem of ``track``: a hash of everything its frames depend on.

    A resume must not store the frames of the file a track pointed to before
    the kill, so the file's path, size and modification time are in the key
    (a file that cannot be stat'ed gets -1; its worker records the error).
    """
    try:
        st = os.stat(track.path)
        size, mtime = st.st_size, st.st_mtime_ns
    except (OSError, ValueError):
        size = mtime = -1
    key = [track.track_id, track.path, size, mtime, feature_hash]
    return hashlib.sha1(json.dumps(key).encode("utf-8")).hexdigest()


@contextmanager
def _disk_full_is_a_store_error(store: Path) -> Iterator[None]:
    """Turn "no space left" (or an exceeded quota) while writing ``store`` into a StoreError."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        what = f" (writing {exc.filename})" if exc.filename else ""
        raise StoreError(
            f"the disk that holds {store} is full{what}: {exc.strerror or exc}; free some space (or raise "
            "the quota) and rerun the same command: it resumes where it stopped"
        ) from None


def min_samples_for(config: FeatureConfig) -> int:
    """Fewest samples that give one full segment of ``segment_frames`` frames."""
    return (config.segment_frames - 1) * config.hop_length


def compute_track(
    path: str, *, config: FeatureConfig, digest=None, notes: list[str] | None = None
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


def _hashed(blocks: Iterable[np.ndarray], digest) -> Iterator[np.ndarray]:
    for block in blocks:
        digest.update(np.ascontiguousarray(block, dtype="<f4").tobytes())
        yield block


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

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    # One BLAS/FFT thread per worker: with a pool already using every core,
    # nested threads oversubscribe them (measured: 3x slower per track).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _record_error(parts: Path, name: str, track_id: str, path: str, reason: str, detail: str) -> tuple[str, None, str, str]:
    """Mark a track as unusable (its ``.err.json`` part) and return the worker's error result."""
    atomic_write_json(parts / f"{name}.err.json", obj={"track_id": track_id, "path": path, "reason": reason, "detail": detail})
    return track_id, None, reason, detail


def _work(track_id: str, path: str, name: str, parts_dir: str, config_dict: dict) -> tuple[str, int | None, str, str]:
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
        return _record_error(parts, name, track_id, path, exc.reason, exc.detail)
    except Exception as exc:  # one bad file never kills the job
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            raise  # the disk, not the track: never recorded as the track's fault
        return _record_error(parts, name, track_id, path, "unexpected error", f"{type(exc).__name__}: {exc}")
    with atomic_path(parts / f"{name}.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, mel.astype(DTYPE))
    atomic_write_json(parts / f"{name}.json", obj={
        "track_id": track_id, "path": path, "n_frames": int(mel.shape[0]),
        "content_hash": digest.hexdigest(), "notes": notes,
    })
    return track_id, int(mel.shape[0]), "", ""


@dataclass
class PrepareResult:
    """What :func:`prepare` did.

    ``errors`` rows (track_id, path, reason, detail) are the tracks that could
    not be used; ``warnings`` rows the tracks stored from the readable part of
    a damaged file. Both are in ``errors.csv``, one row per track.
    """

    path: Path
    stored: int
    new: int
    errors: list[dict] = field(default_factory=list)
    skipped_existing: int = 0
    warnings: list[dict] = field(default_factory=list)


def _read_csv_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _read_index(store: Path) -> list[dict]:
    return _read_csv_rows(store / "index.csv")


def _read_errors(store: Path) -> list[dict]:
    return _read_csv_rows(store / "errors.csv")


def _check_settings(store: Path, config: FeatureConfig) -> None:
    meta_path = store / "store.json"
    if not meta_path.exists():
        return
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        stored_hash = meta.get("feature_hash")
    except (ValueError, AttributeError) as exc:
        raise StoreError(f"{meta_path} is unreadable ({exc}); pass --overwrite to prepare the store again") from None
    if stored_hash != config.hash():
        raise StoreError(
            f"{store} holds features made with other settings ({meta.get('feature_config')}); "
            "use another output folder or pass --overwrite"
        )


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


def _run_pool(todo: list[Track], names: dict[str, str], parts: Path, config: FeatureConfig, workers: int) -> None:
    """Process ``todo`` on a process pool; a crashed worker is retried once, then the track is an error.

    ``workers=0`` processes the tracks in this process (no isolation from a
    crashing decoder, but no process start-up either).
    """
    progress = bar(total=len(todo), desc="prepare", unit="track")
    cfg = to_dict(config)

    def finished(track: Track, n: int | None, reason: str, detail: str) -> None:
        if n is None:
            log.warning("skipped %s: %s%s", track.path, reason, f" ({detail})" if detail else "")
        progress.update(1)

    if workers == 0:
        for t in todo:
            finished(t, *_work(t.track_id, t.path, names[t.track_id], str(parts), cfg)[1:])
        progress.close()
        return
    # A worker that dies breaks every pending future, so a break charges nobody
    # at first: the unfinished tracks are retried on one worker, where tasks run
    # in submission order and the first broken future is the track that crashed.
    # Only that track is recorded; the rest go back to the full pool.
    pending = list(todo)
    round_workers = workers
    while pending:
        retry: list[Track] = []
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
            isolated = round_workers == 1
            culprit_found = False
            try:
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
                        result = _record_error(parts, names[track.track_id], track.track_id, track.path,
                                               "decoder crashed", "the worker process died on it")
                    finished(track, *result[1:])
            except BaseException:
                for fut in futures:  # a full disk or Ctrl-C: do not decode the rest first
                    fut.cancel()
                raise
        pending = retry
        if pending and not isolated:
            log.warning("a worker process died; retrying %d unfinished track(s) one at a time", len(pending))
        round_workers = workers if isolated else 1
    progress.close()


def _part_done(parts: Path, name: str) -> bool:
    """Whether an interrupted run finished this part (its frames and record, or its error)."""
    return ((parts / f"{name}.json").exists() and (parts / f"{name}.npy").exists()) or (parts / f"{name}.err.json").exists()


def _load_part_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}); delete it and rerun") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path} is not a part record; delete it and rerun")
    return data


def _load_part_frames(path: Path, n_mels: int, n_frames) -> np.ndarray:
    try:  # never unpickle: a part holding objects is refused, not executed
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}); delete it and rerun") from None
    if arr.dtype != DTYPE or arr.ndim != 2 or arr.shape[1] != n_mels or arr.shape[0] != n_frames:
        raise StoreError(f"{path} is not the [{n_frames}, {n_mels}] float16 part its .json describes; delete it and rerun")
    return arr


def _append(store: Path, catalog: Catalog, old_rows: list[dict], config: FeatureConfig,
            names: dict[str, str]) -> tuple[list[dict], list[dict], list[dict]]:
    """Append the finished parts to frames.f16 and return (all index rows, new error rows, new warning rows).

    Old frames never move: the file is cut back to the length the old index
    covers (dropping what an interrupted append left) and the new tracks are
    appended in catalog order. Until the new index.csv lands, the old one
    still describes a valid prefix of the file, so a kill at any point is safe.
    """
    parts = store / "parts"
    rows = [dict(r) for r in old_rows]
    errors, warnings = [], []
    row_bytes = config.n_mels * np.dtype(DTYPE).itemsize
    pos = sum(int(r["n_frames"]) for r in old_rows)
    with open(store / "frames.f16", "ab") as fh:
        fh.truncate(pos * row_bytes)
        for t in catalog:
            name = names.get(t.track_id)  # None: stored or known unusable before this run
            if name is None:
                continue
            if (parts / f"{name}.json").exists():
                meta = _load_part_json(parts / f"{name}.json")
                arr = _load_part_frames(parts / f"{name}.npy", config.n_mels, meta.get("n_frames"))
                fh.write(np.ascontiguousarray(arr).tobytes())
                rows.append({**t.as_row(), "content_hash": meta.get("content_hash", ""), "offset": pos,
                             "n_frames": arr.shape[0]})
                pos += arr.shape[0]
                warnings += [{"track_id": t.track_id, "path": t.path, "reason": PARTIAL_REASON, "detail": note}
                             for note in meta.get("notes") or []]
            elif (parts / f"{name}.err.json").exists():
                errors.append(_load_part_json(parts / f"{name}.err.json"))
        fh.flush()
        os.fsync(fh.fileno())
    return rows, errors, warnings


def prepare(
    catalog: Catalog,
    *,
    out_dir: str | Path,
    config: FeatureConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    retry_errors: bool = False,
    shard: tuple[int, int] | None = None,
) -> PrepareResult:
    """Decode every track of ``catalog`` once and store its log-mel in ``out_dir``.

    Holds the folder's write lock throughout: a second ``prepare`` into the
    same folder fails at once with :class:`~musicrep.errors.FolderLockedError`.

    Parameters
    ----------
    catalog : the tracks to store (their ``path`` must be readable audio)
    out_dir : the store folder (created)
    config : front-end settings; the paper's by default
    workers : processes; all cores by default; 0 prepares in this process
    overwrite : delete a store made with other settings instead of refusing
    retry_errors : try again the tracks an earlier run could not use
    shard : ``(K, N)``: store only shard K of N of ``catalog``, chosen by a hash
        of the track id (:func:`~musicrep.data.shards.shard_of`) and recorded in
        ``shard.json``; join the N stores with :func:`~musicrep.data.shards.merge_stores`

    Returns
    -------
    PrepareResult
        Raises :class:`StoreError` when no track at all could be used (a shard
        may hold none), or when the disk is full (a rerun then resumes).
    """
    config = config or FeatureConfig()
    store = Path(out_dir)
    with _disk_full_is_a_store_error(store), folder_lock(store):
        return _prepare(catalog, store, config, workers, overwrite, retry_errors, shard)


def _prepare(catalog: Catalog, store: Path, config: FeatureConfig, workers: int | None,
             overwrite: bool, retry_errors: bool, shard: tuple[int, int] | None) -> PrepareResult:
    from .shards import check_shard, claim_shard  # here, not at the top: shards imports this module

    if shard is not None:
        check_shard(shard)  # before --overwrite deletes anything
    if overwrite and store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True, exist_ok=True)
    _check_settings(store, config)
    catalog = claim_shard(store, catalog=catalog, shard=shard)
    # Tracks stored earlier stay in the store even when this catalog lacks them:
    # old frames never move (see _append).
    old_rows = _read_index(store)
    stored_before = {r["track_id"] for r in old_rows}
    # errors.csv also holds the warnings of stored tracks: they stay as long as the tracks do
    old_errors = [e for e in _read_errors(store) if e["track_id"] in stored_before
                  or (e["track_id"] in catalog and not retry_errors)]
    done_ids = stored_before | {e["track_id"] for e in old_errors}
    parts = store / "parts"
    if retry_errors and parts.exists():
        for p in parts.glob("*.err.json"):
            p.unlink()
    if (store / "DONE").exists() and all(t.track_id in done_ids for t in catalog):
        log.info("%s is up to date (%d tracks); nothing to do", store, len(old_rows))
        errors, warnings = _by_outcome(old_errors, stored_before)
        return PrepareResult(store, len(old_rows), 0, errors, skipped_existing=len(old_rows), warnings=warnings)

    parts.mkdir(exist_ok=True)
    feature_hash = config.hash()
    names = {t.track_id: _part_name(t, feature_hash) for t in catalog if t.track_id not in done_ids}
    todo = [t for t in catalog if t.track_id in names and not _part_done(parts, names[t.track_id])]
    resumed = len(names) - len(todo)
    if resumed:
        log.info("resuming: %d track(s) already prepared by an interrupted run", resumed)
    atomic_write_json(store / "store.json", obj=_meta(config, None))
    (store / "DONE").unlink(missing_ok=True)
    if todo:
        _run_pool(todo, names, parts, config, (os.cpu_count() or 1) if workers is None else workers)
    rows, new_errors, new_warnings = _append(store, catalog, old_rows, config, names)
    # One row per track, its latest outcome: a run killed after writing
    # errors.csv finds its rows there and its parts again on the resume.
    latest = {e["track_id"]: e for e in old_errors + new_errors + new_warnings}
    atomic_write_csv(store / "errors.csv", rows=latest.values(), fieldnames=ERROR_COLUMNS)
    errors, warnings = _by_outcome(latest.values(), {r["track_id"] for r in rows})
    if not rows and shard is None:
        raise StoreError(
            f"none of the {len(catalog)} tracks could be used; see {store / 'errors.csv'} for each file's reason"
        )
    _write_index(store / "index.csv", rows)
    total = sum(int(r["n_frames"]) for r in rows)
    atomic_write_json(store / "store.json", obj=_meta(config, total))
    atomic_write_text(store / "DONE", text=f"{len(rows)} tracks, {total} frames\n")
    shutil.rmtree(parts, ignore_errors=True)
    log.info("stored %d tracks (%d new, %d unusable) in %s", len(rows), len(rows) - len(old_rows), len(errors), store)
    return PrepareResult(store, len(rows), len(rows) - len(old_rows), errors, warnings=warnings)


def _by_outcome(rows: Iterable[dict], stored: set[str]) -> tuple[list[dict], list[dict]]:
    """Split errors.csv rows into (unusable tracks, warnings of stored tracks)."""
    rows = list(rows)
    return [r for r in rows if r["track_id"] not in stored], [r for r in rows if r["track_id"] in stored]


def _write_index(path: Path, rows: list[dict]) -> None:
    extra = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in COLUMNS and c not in INDEX_TAIL]
    atomic_write_csv(path, rows=rows, fieldnames=list(COLUMNS) + extra + list(INDEX_TAIL))


def from_arrays(out_dir: str | Path, *, tracks, frames, config: FeatureConfig | None = None) -> "FeatureStore":
    """A store from log-mels already in memory (precomputed features, tests).

    The tracks' ``content_hash`` is left empty (no audio was decoded), so
    :func:`duplicate_groups` finds none among them.

    Parameters
    ----------
    out_dir : the store folder; must not hold a store yet
    tracks : sequence of :class:`~musicrep.data.catalog.Track`
    frames : matching sequence of np.ndarray [shape=(n_frames, n_mels)], not standardised
    config : the front-end settings the frames were made with
    """
    config = config or FeatureConfig()
    store = Path(out_dir)
    with _disk_full_is_a_store_error(store), folder_lock(store):
        if (store / "store.json").exists():
            raise StoreError(f"{store} already holds a store; choose another folder")
        tracks, frames = list(tracks), list(frames)
        if len(tracks) != len(frames) or not tracks:
            raise StoreError(f"need one frame array per track, got {len(tracks)} tracks and {len(frames)} arrays")
        store.mkdir(parents=True, exist_ok=True)
        rows, pos = [], 0
        with atomic_path(store / "frames.f16") as tmp, open(tmp, "wb") as fh:
            for t, f in zip(tracks, frames):
                f = np.asarray(f)
                if f.ndim != 2 or f.shape[1] != config.n_mels:
                    raise StoreError(f"track {t.track_id!r}: frames must be [n_frames, {config.n_mels}], got {f.shape}")
                fh.write(np.ascontiguousarray(f, dtype=DTYPE).tobytes())
                rows.append({**t.as_row(), "offset": pos, "n_frames": len(f)})
                pos += len(f)
        _write_index(store / "index.csv", rows)
        atomic_write_csv(store / "errors.csv", rows=[], fieldnames=ERROR_COLUMNS)
        atomic_write_json(store / "store.json", obj=_meta(config, pos))
        atomic_write_text(store / "DONE", text=f"{len(rows)} tracks, {pos} frames\n")
    return FeatureStore(store)


def _meta(config: FeatureConfig, total: int | None) -> dict:
    return {
        "version": VERSION,
        "feature_config": to_dict(config),
        "feature_hash": config.hash(),
        "n_mels": config.n_mels,
        "dtype": "float16",
        "total_frames": total,
    }


def _read_header(store: Path) -> tuple[FeatureConfig, int]:
    """(feature settings, total_frames) from ``store.json``, every field checked.

    The settings pass the same range checks as any settings; their hash must
    be the one stored beside them, so an edited ``n_mels`` or ``hop_length``
    cannot make the frames be read with another shape or meaning.
    """
    where = store / "store.json"
    try:
        meta = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # also UnicodeDecodeError
        raise StoreError(f"{where} is unreadable or malformed ({exc}); prepare the store again") from None

    def bad(what: str) -> StoreError:
        return StoreError(f"{where}: {what}; the header was edited or damaged: prepare the store again")

    if not isinstance(meta, dict):
        raise bad("the file is not a mapping of header fields")
    if meta.get("version") != VERSION:
        raise StoreError(f"{store} has store version {meta.get('version')}, this musicrep reads {VERSION}")
    if not isinstance(meta.get("feature_config"), dict):
        raise bad(f"feature_config {meta.get('feature_config')!r} is not a mapping of settings")
    try:
        config = _from_dict(FeatureConfig, meta["feature_config"], prefix="feature_config.")
    except ConfigError as exc:
        raise StoreError(f"{where} is unreadable or malformed ({exc}); prepare the store again") from None
    if meta.get("feature_hash") != config.hash():
        raise bad(f"feature_hash {meta.get('feature_hash')!r} does not match the stored feature settings "
                  f"(their hash is {config.hash()!r})")
    n_mels = meta.get("n_mels")
    if type(n_mels) is not int or n_mels != config.n_mels:
        raise bad(f"n_mels {n_mels!r} differs from feature_config.n_mels {config.n_mels}")
    if meta.get("dtype") != "float16":
        raise bad(f"dtype {meta.get('dtype')!r} is not 'float16'")
    total = meta.get("total_frames")
    if type(total) is not int or total < 0:
        raise bad(f"total_frames {total!r} is not a whole number >= 0")
    return config, total


def _whole(value, column: str, where: str) -> int:
    """An index.csv cell that must be a whole number written in digits (int() also takes '1_0', ' +1')."""
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]+", value):
        raise StoreError(f"{where}: {column} {value!r} is not a whole number; index.csv is malformed: "
                         "prepare the store again")
    return int(value)


class FeatureStore:
    """Read access to a prepared store, without loading the frames into memory.

    Parameters
    ----------
    path : the store folder written by :func:`prepare`
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "DONE").exists():
            what = "is not a feature store" if not (self.path / "store.json").exists() else "is incomplete (interrupted prepare?)"
            if (self.path / "merge.json").exists():
                raise StoreError(f"{self.path} is incomplete (interrupted merge?); rerun `musicrep store merge ... -o {self.path}`")
            raise StoreError(f"{self.path} {what}; run `musicrep prepare CATALOG -o {self.path}`")
        self.feature_config, self.total_frames = _read_header(self.path)
        index_path = self.path / "index.csv"
        if not index_path.is_file():
            raise StoreError(f"{index_path} is missing; prepare the store again")
        tracks, offsets, lengths, hashes = [], [], [], []
        try:
            for i, r in enumerate(_read_index(self.path), start=2):
                where = f"{index_path}:{i}"
                offset, n = _whole(r.pop("offset"), "offset", where), _whole(r.pop("n_frames"), "n_frames", where)
                # Python ints: offsets near 2**62 cannot wrap around as int64 sums would
                if offset < 0 or n < 0 or offset + n > self.total_frames:
                    raise StoreError(f"{where}: offset {offset} + n_frames {n} points outside frames.f16 "
                                     f"({self.total_frames} frames); prepare the store again")
                content = r.pop("content_hash", "") or ""  # absent in stores made before it was recorded
                if content and not _HEX40.fullmatch(content):
                    raise StoreError(f"{where}: content_hash {content!r} is not a SHA-1; index.csv is malformed: "
                                     "prepare the store again")
                offsets.append(offset)
                lengths.append(n)
                hashes.append(content)
                tracks.append(track_from_row(r, where=where))
        except (KeyError, ValueError, TypeError) as exc:  # also UnicodeDecodeError
            raise StoreError(f"{index_path} is malformed ({type(exc).__name__}: {exc}); prepare the store again") from None
        self.catalog = Catalog(tracks, source=str(index_path))
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self._content_hashes = hashes
        self._pos = {t.track_id: i for i, t in enumerate(tracks)}
        expected = self.total_frames * self.feature_config.n_mels * np.dtype(DTYPE).itemsize
        actual = (self.path / "frames.f16").stat().st_size if (self.path / "frames.f16").exists() else -1
        if actual != expected:
            raise StoreError(f"{self.path}/frames.f16 has {actual} bytes, expected {expected}; prepare the store again")
        self._mm: np.memmap | None = None

    # A memmap is reopened lazily in each process (DataLoader workers, pools).
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mm"] = None
        return state

    @property
    def _frames(self) -> np.memmap:
        if self._mm is None:
            self._mm = np.memmap(self.path / "frames.f16", dtype=DTYPE, mode="r", shape=(self.total_frames, self.feature_config.n_mels))
        return self._mm

    @property
    def track_ids(self) -> list[str]:
        return self.catalog.track_ids

    def __len__(self) -> int:
        return len(self.catalog)

    def __contains__(self, track_id) -> bool:
        return track_id in self._pos

    def _index(self, track_id: str) -> int:
        try:
            return self._pos[track_id]
        except KeyError:
            raise StoreError(f"{self.path}: no track {track_id!r} in this store") from None

    def n_frames(self, track_id: str) -> int:
        return int(self._lengths[self._index(track_id)])

    def content_hash(self, track_id: str) -> str:
        """SHA-1 of the track's decoded mono samples; ``""`` when not recorded (older stores, :func:`from_arrays`)."""
        return self._content_hashes[self._index(track_id)]

    def frames(self, track_id: str, *, dtype=np.float32) -> np.ndarray:
        """The track's log-mel, [n_frames, n_mels], not standardised; ``dtype=np.float16``: as stored, not copied."""
        i = self._index(track_id)
        off, n = self._offsets[i], self._lengths[i]
        return np.asarray(self._frames[off : off + n], dtype=dtype)

    def crop(self, track_id: str, *, rng: np.random.Generator | None = None, start: int | None = None, length: int | None = None) -> np.ndarray:
        """``length`` frames (one segment by default) from ``start``, or a random start drawn from ``rng``.

        Returns
        -------
        np.ndarray [shape=(length, n_mels), dtype=float32]
        """
        length = length or self.feature_config.segment_frames
        i = self._index(track_id)
        n = int(self._lengths[i])
        if n < length:
            raise StoreError(f"track {track_id!r} has {n} frames, fewer than the {length} asked for")
        if start is None:
            start = int((rng or np.random.default_rng()).integers(0, n - length + 1))
        if not 0 <= start <= n - length:
            raise StoreError(f"crop start {start} is outside 0..{n - length} for track {track_id!r}")
        off = int(self._offsets[i]) + start
        return np.asarray(self._frames[off : off + length], dtype=np.float32)

    def stats(self, track_ids: list[str] | None = None) -> tuple[float, float]:
        """Scalar mean and standard deviation over the frames of ``track_ids`` (all by default)."""
        ids = self.track_ids if track_ids is None else track_ids
        total = 0
        s = s2 = 0.0
        for tid in ids:
            x = self.frames(tid).astype(np.float64)
            total += x.size
            s += float(x.sum())
            s2 += float(np.square(x).sum())
        if total == 0:
            raise StoreError("cannot compute statistics over zero frames")
        mean = s / total
        var = max(s2 / total - mean * mean, 0.0)
        return mean, float(np.sqrt(var)) or 1.0


def duplicate_groups(store: FeatureStore | str | Path) -> list[list[str]]:
    """Track ids whose decoded audio is identical, so that a split can keep each group in one part.

    Two tracks are duplicates when their ``content_hash`` (the SHA-1 of the
    decoded, resampled mono samples recorded by :func:`prepare`) is equal: the
    same recording under two ids, or in two lossless containers (WAV and FLAC).
    Lossy re-encodings decode to other samples and are not found.

    Parameters
    ----------
    store : a :class:`FeatureStore` or its folder

    Returns
    -------
    list[list[str]]
        One sorted list of track ids per group of two or more, the groups sorted
        by their first id. Tracks without a recorded hash (stores prepared
        before it was recorded, :func:`from_arrays`) are in no group, so such
        a store gives ``[]``.
    """
    store = open_store(store)
    by_hash: dict[str, list[str]] = defaultdict(list)
    for track_id, content in zip(store.track_ids, store._content_hashes):
        if content:
            by_hash[content].append(track_id)
    return sorted(sorted(ids) for ids in by_hash.values() if len(ids) > 1)


def load_errors(path: str | Path) -> list[dict]:
    """The rows of a store's errors.csv (track_id, path, reason, detail), one per track.

    A row whose reason is :data:`PARTIAL_REASON` is a warning: that track is
    stored (from the readable part of a damaged file).
    """
    return _read_errors(Path(path))


__all__ = ["FeatureStore", "prepare", "from_arrays", "PrepareResult", "compute_track", "duplicate_groups",
           "load_errors", "PARTIAL_REASON"]


def open_store(store: "FeatureStore | str | Path") -> "FeatureStore":
    """A :class:`FeatureStore` from a path, or the store itself: the one way every command opens one."""
    return store if isinstance(store, FeatureStore) else FeatureStore(Path(store))
