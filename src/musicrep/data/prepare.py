"""Preparing a feature store from audio: :func:`prepare` and its resumable part files.

:func:`prepare` decodes every track once on a process pool
(:mod:`musicrep.data.prepare_workers`) and writes each result as its own part
file (atomically), so a killed run resumes where it stopped. A part is named by
a hash of the track id, the file's path, size and modification time and the
feature settings, so a resume recomputes a track whose file changed. When every
track is done, the parts are appended to ``frames.f16`` and removed. A rerun
with more tracks appends them; a rerun with nothing new does nothing; tracks
stored before stay stored. Only one process writes a store at a time
(:func:`~musicrep.locks.folder_lock`); worker processes die with the process
that started them. Tracks are stored in catalog order, so the N shard stores of
a catalog (:mod:`musicrep.data.shards`) merge into the store one ``prepare`` of
the whole catalog writes. The files are described in :mod:`musicrep.data.store_files`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import FeatureConfig
from ..errors import ConfigError, StoreError
from ..io import atomic_write_csv, atomic_write_json, atomic_write_text
from ..locks import folder_lock
from .catalog import Catalog, Track, read_csv
from .prepare_workers import run_pool
from .shards import check_shard, claim_shard
from .store import FeatureStore, open_store
from .store_files import (
    DTYPE,
    ERROR_COLUMNS,
    PARTIAL_REASON,
    by_outcome,
    disk_full_is_a_store_error,
    read_errors,
    read_index,
    store_header,
    write_index,
)

log = logging.getLogger(__name__)


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


def _load_part_frames(path: Path, n_mels: int, n_frames: object) -> np.ndarray:
    try:  # never unpickle: a part holding objects is refused, not executed
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}); delete it and rerun") from None
    if arr.dtype != DTYPE or arr.ndim != 2 or arr.shape[1] != n_mels or arr.shape[0] != n_frames:
        raise StoreError(f"{path} is not the [{n_frames}, {n_mels}] float16 part its .json describes; delete it and rerun")
    return arr


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
        ``shard.json``; join the N stores with :func:`~musicrep.data.merge.merge_stores`

    Returns
    -------
    PrepareResult
        Raises :class:`StoreError` when no track at all could be used (a shard
        may hold none), or when the disk is full (a rerun then resumes).
    """
    config = config or FeatureConfig()
    store = Path(out_dir)
    with disk_full_is_a_store_error(store), folder_lock(store):
        return _prepare(catalog, store, config, workers, overwrite, retry_errors, shard)


def _prepare(catalog: Catalog, store: Path, config: FeatureConfig, workers: int | None,
             overwrite: bool, retry_errors: bool, shard: tuple[int, int] | None) -> PrepareResult:
    if shard is not None:
        check_shard(shard)  # before --overwrite deletes anything
    if overwrite and store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True, exist_ok=True)
    _check_settings(store, config)
    catalog = claim_shard(store, catalog=catalog, shard=shard)
    # Tracks stored earlier stay in the store even when this catalog lacks them:
    # old frames never move (see _append).
    old_rows = read_index(store)
    stored_before = {r["track_id"] for r in old_rows}
    # errors.csv also holds the warnings of stored tracks: they stay as long as the tracks do
    old_errors = [e for e in read_errors(store) if e["track_id"] in stored_before
                  or (e["track_id"] in catalog and not retry_errors)]
    done_ids = stored_before | {e["track_id"] for e in old_errors}
    parts = store / "parts"
    if retry_errors and parts.exists():
        for p in parts.glob("*.err.json"):
            p.unlink()
    if (store / "DONE").exists() and all(t.track_id in done_ids for t in catalog):
        log.info("%s is up to date (%d tracks); nothing to do", store, len(old_rows))
        errors, warnings = by_outcome(old_errors, stored=stored_before)
        return PrepareResult(store, len(old_rows), 0, errors, skipped_existing=len(old_rows), warnings=warnings)
    names = _decode_new_tracks(store, catalog, config, done_ids, workers)
    return _finish(store, catalog, config, names, old_rows, old_errors, shard)


def _decode_new_tracks(store: Path, catalog: Catalog, config: FeatureConfig, done_ids: set[str],
                       workers: int | None) -> dict[str, str]:
    """Write the part files of every track not done before (resuming an interrupted run); their names.

    Returns
    -------
    dict
        track id -> part file stem, for every track this run stores or finds unusable
    """
    parts = store / "parts"
    parts.mkdir(exist_ok=True)
    feature_hash = config.hash()
    names = {t.track_id: _part_name(t, feature_hash) for t in catalog if t.track_id not in done_ids}
    todo = [t for t in catalog if t.track_id in names and not _part_done(parts, names[t.track_id])]
    resumed = len(names) - len(todo)
    if resumed:
        log.info("resuming: %d track(s) already prepared by an interrupted run", resumed)
    atomic_write_json(store / "store.json", obj=store_header(config, total=None))
    (store / "DONE").unlink(missing_ok=True)
    if todo:
        run_pool(todo, names=names, parts=parts, config=config,
                 workers=(os.cpu_count() or 1) if workers is None else workers)
    return names


def _finish(store: Path, catalog: Catalog, config: FeatureConfig, names: dict[str, str], old_rows: list[dict],
            old_errors: list[dict], shard: tuple[int, int] | None) -> PrepareResult:
    """Append the parts, write errors.csv, index.csv, store.json and DONE (last), remove the parts."""
    rows, new_errors, new_warnings = _append(store, catalog, old_rows, config, names)
    # One row per track, its latest outcome: a run killed after writing
    # errors.csv finds its rows there and its parts again on the resume.
    latest = {e["track_id"]: e for e in old_errors + new_errors + new_warnings}
    atomic_write_csv(store / "errors.csv", rows=latest.values(), fieldnames=ERROR_COLUMNS)
    errors, warnings = by_outcome(latest.values(), stored={r["track_id"] for r in rows})
    if not rows and shard is None:
        raise StoreError(
            f"none of the {len(catalog)} tracks could be used; see {store / 'errors.csv'} for each file's reason"
        )
    write_index(store / "index.csv", rows=rows)
    total = sum(int(r["n_frames"]) for r in rows)
    atomic_write_json(store / "store.json", obj=store_header(config, total=total))
    atomic_write_text(store / "DONE", text=f"{len(rows)} tracks, {total} frames\n")
    shutil.rmtree(store / "parts", ignore_errors=True)
    log.info("stored %d tracks (%d new, %d unusable) in %s", len(rows), len(rows) - len(old_rows), len(errors), store)
    return PrepareResult(store, len(rows), len(rows) - len(old_rows), errors, warnings=warnings)


__all__ = ["prepare", "PrepareResult"]

def open_or_prepare(
    *,
    store: str | Path | None = None,
    catalog: str | Path | None = None,
    store_dir: str | Path | None = None,
    feature_config: FeatureConfig | None = None,
) -> FeatureStore:
    """An existing store, or the store of a catalog prepared (resumably) if it is not there yet.

    Used for the collections evaluations read (transfer, tagging), which a user
    may give as a store or as a catalog.

    Parameters
    ----------
    store : an existing store folder, or
    catalog : a catalog CSV; its store is prepared (resumably)
        in ``store_dir`` (default ``<catalog folder>/<catalog stem>.store``)
    feature_config : front-end settings for preparing (the model's)
    """
    if (store is None) == (catalog is None):
        raise ConfigError("give exactly one of --store STORE or --catalog CATALOG")
    if store is not None:
        return open_store(store)
    catalog = Path(catalog)
    target = Path(store_dir) if store_dir is not None else catalog.with_suffix(".store")
    prepare(read_csv(catalog), out_dir=target, config=feature_config)
    return open_store(target)
