"""Shard stores joined into one store: :func:`merge_stores` (``musicrep store merge STORE... -o STORE``).

:func:`merge_stores` checks that every input is finished, that all hold the
same feature settings and no track twice, and that the shards of one catalog
are all there; it writes the tracks in catalog order, so a merged store's
``frames.f16``, ``index.csv``, ``errors.csv`` and ``store.json`` are those of a
one-shot :func:`~musicrep.data.prepare.prepare` of the whole catalog. (Stores without
``shard.json`` are joined in the order given.) The merge appends frames to the
output and records in ``merge.json`` how far it got (after an fsync), so a
killed merge rerun continues there; ``DONE`` is written last, and a finished
merge rerun does nothing. ``merge.json`` stays, naming the merged stores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import StoreError
from ..io import atomic_write_csv, atomic_write_json, atomic_write_text, remove_stale_temps
from ..locks import folder_lock
from ..progress import bar
from .shards import MERGE_FILE, SHARD_FILE, VERSION, describe_shard, read_record
from .store import FeatureStore, open_store
from .store_files import (
    DTYPE,
    ERROR_COLUMNS,
    by_outcome,
    disk_full_is_a_store_error,
    read_errors,
    read_index,
    store_header,
    write_index,
)

log = logging.getLogger(__name__)

#: Frames bytes a merge copies between two records of its progress (each an fsync).
CHECKPOINT_BYTES = 256 << 20
#: The files a merge writes into its output folder.
_OUTPUTS = ("frames.f16", "index.csv", "errors.csv", "store.json", MERGE_FILE, "DONE")


@dataclass
class MergeResult:
    """What :func:`merge_stores` did.

    ``errors`` are the unusable tracks and ``warnings`` the tracks stored from
    a damaged file (the rows of the merged ``errors.csv``); ``missing`` the
    absent shards (with ``allow_partial``); ``resumed`` how many tracks an
    interrupted merge had copied already.
    """

    path: Path
    stored: int
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    resumed: int = 0
    up_to_date: bool = False


@dataclass
class _Input:
    path: Path
    store: FeatureStore
    rows: list[dict]  # index.csv as stored
    errors: list[dict]  # errors.csv
    record: dict | None  # shard.json


def _open_input(path: Path) -> _Input:
    record = read_record(path)
    if not (path / "DONE").exists():
        if not (path / "store.json").exists():
            raise StoreError(f"{path} is not a feature store; give the folders `musicrep prepare` wrote")
        again = f"musicrep prepare CATALOG -o {path}" + (f" --shard {record['shard']}/{record['of']}" if record else "")
        raise StoreError(f"{path} is unfinished (no DONE: its prepare was interrupted or is still running); "
                         f"run `{again}` until it ends, then merge again")
    item = _Input(path, open_store(path), read_index(path), read_errors(path), record)
    if record is not None:
        outside = [r["track_id"] for r in item.rows + item.errors if r["track_id"] not in record["positions"]]
        if outside:
            raise StoreError(f"{path} holds track {outside[0]!r}, which is not in its {SHARD_FILE}; prepare it again")
    return item


def _check_inputs(inputs: list[_Input], out: Path) -> None:
    """Same feature settings everywhere, each track in one input only, the output not an input."""
    first, seen = inputs[0], {out.resolve()}
    for item in inputs:
        if item.path.resolve() in seen:
            what = "the output folder" if item.path.resolve() == out.resolve() else "given twice"
            raise StoreError(f"{item.path} is {what}; give each store once and write the merge to a new folder")
        seen.add(item.path.resolve())
        a, b = first.store.feature_config, item.store.feature_config
        if a.hash() != b.hash():
            diff = ", ".join(f"{k} {getattr(a, k)!r} vs {getattr(b, k)!r}" for k in a.__dataclass_fields__
                             if getattr(a, k) != getattr(b, k))
            raise StoreError(f"{first.path} and {item.path} hold features made with other settings ({diff}); "
                             "prepare every shard with the same --config and --set")
    owner: dict[str, Path] = {}
    for item in inputs:
        for row in item.rows + item.errors:
            tid = row["track_id"]
            if owner.setdefault(tid, item.path) != item.path:
                raise StoreError(f"track {tid!r} is in both {owner[tid]} and {item.path}; a track must be in "
                                 "one of the merged stores only")


def _check_shards(inputs: list[_Input], allow_partial: bool) -> list[int]:
    """The missing shard numbers; a StoreError when the inputs are not shards of one catalog."""
    shards = [i for i in inputs if i.record is not None]
    if not shards:
        return []
    first = shards[0]
    for item in inputs:
        if item.record is None:
            raise StoreError(f"{item.path} holds a whole catalog and {first.path} {describe_shard(first.record)}; "
                             "merge the shards of one catalog, or stores without shards")
        if item.record["catalog"]["sha1"] != first.record["catalog"]["sha1"]:
            raise StoreError(f"{first.path} and {item.path} are shards of different catalogs "
                             f"({describe_shard(first.record)}; {describe_shard(item.record)}): prepare every shard from one catalog")
        if item.record["of"] != first.record["of"]:
            raise StoreError(f"{first.path} is shard {first.record['shard']}/{first.record['of']} and {item.path} "
                             f"shard {item.record['shard']}/{item.record['of']}: the catalog was split two ways")
    by_k: dict[int, Path] = {}
    for item in shards:
        k = item.record["shard"]
        if by_k.setdefault(k, item.path) != item.path:
            raise StoreError(f"{by_k[k]} and {item.path} are both shard {k}/{first.record['of']}")
    n = first.record["of"]
    missing = [k for k in range(1, n + 1) if k not in by_k]
    if missing and not allow_partial:
        source = first.record["catalog"].get("source", "CATALOG")
        what = f"shard {missing[0]} of {n} of {source} is" if len(missing) == 1 else \
            f"shards {', '.join(map(str, missing))} of {n} of {source} are"
        raise StoreError(f"{what} missing: prepare them (`musicrep prepare {source} -o STORE --shard "
                         f"{missing[0]}/{n}`) and merge again, or pass --allow-partial to merge without them")
    return missing


def _key(item: _Input, i: int, j: int, track_id: str) -> tuple[int, int]:
    """Where a track goes: its catalog row for a shard, else (input, row) in the order given."""
    return (item.record["positions"][track_id], 0) if item.record is not None else (i, j)


def _file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plan(inputs: list[_Input]) -> dict:
    """What a merge joins; a rerun resumes (or skips) only a merge of the same stores, unchanged."""
    return {"version": VERSION, "inputs": [
        {"path": str(i.path.resolve()), "feature_hash": i.store.feature_config.hash(),
         "total_frames": i.store.total_frames, "index_sha1": _file_sha1(i.path / "index.csv"),
         "errors_sha1": _file_sha1(i.path / "errors.csv") if (i.path / "errors.csv").exists() else "",
         "shard": [i.record["shard"], i.record["of"]] if i.record else None} for i in inputs]}


def _read_merge(out: Path) -> dict:
    try:
        record = json.loads((out / MERGE_FILE).read_text(encoding="utf-8"))
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _checkpoint(out: Path, plan: dict, tracks: int, frames: int) -> None:
    """Record that the first ``tracks`` tracks (``frames`` frames) are in frames.f16, fsync'ed."""
    atomic_write_json(out / MERGE_FILE, obj={**plan, "copied": {"tracks": tracks, "frames": frames}})


def _resume_point(out: Path, plan: dict, offsets: list[int], row_bytes: int) -> int:
    """How many tracks an interrupted merge of the same stores copied (0 to start afresh)."""
    record = _read_merge(out)
    if not record:
        if out.exists() and any(not p.name.endswith(".tmp") for p in out.iterdir()):
            raise StoreError(f"{out} is not empty and holds no merge; write the merge to a new folder")
        return 0
    if {k: v for k, v in record.items() if k != "copied"} != plan:
        log.info("%s held an unfinished merge of other stores; starting over", out)
        return 0
    copied = record.get("copied") or {}
    tracks, frames = copied.get("tracks"), copied.get("frames")
    size = (out / "frames.f16").stat().st_size if (out / "frames.f16").exists() else -1
    if type(tracks) is not int or not 0 <= tracks < len(offsets) or offsets[tracks] != frames \
            or size < frames * row_bytes:
        return 0
    return tracks


def merge_stores(*, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                 allow_partial: bool = False) -> MergeResult:
    """Join finished stores (the shards of one catalog) into one store ``out_dir``.

    Holds ``out_dir``'s write lock throughout. A killed merge rerun with the
    same inputs continues where it stopped; a finished one rerun does nothing.

    Parameters
    ----------
    inputs : store folders written by :func:`~musicrep.data.prepare.prepare` (``shard=`` or not)
    out_dir : the merged store's folder (new, or the folder of an unfinished merge)
    allow_partial : merge even when shards of the catalog are missing

    Returns
    -------
    MergeResult
        Raises :class:`StoreError` (naming the store) when an input is
        unfinished, the feature settings differ, a track is in two inputs, the
        inputs are shards of different catalogs, or a shard is missing.
    """
    out = Path(out_dir)
    if not inputs:
        raise StoreError("give at least one store to merge")
    with disk_full_is_a_store_error(out), folder_lock(out):
        items = [_open_input(Path(p)) for p in inputs]
        missing = _check_shards(items, allow_partial)
        _check_inputs(items, out)
        if items[0].record is not None:  # shard order, so a glob's stores/shard-10 < shard-2 is no other plan
            items.sort(key=lambda i: i.record["shard"])
        return _merge(items, out, _plan(items), missing)


def _merge(items: list[_Input], out: Path, plan: dict, missing: list[int]) -> MergeResult:
    order = sorted((_key(item, i, j, r["track_id"]), i, j) for i, item in enumerate(items) for j, r in enumerate(item.rows))
    rows, offsets = [], [0]  # offsets[t]: where track t starts; offsets[-1]: the total
    for _, i, j in order:
        rows.append({**items[i].rows[j], "offset": offsets[-1]})
        offsets.append(offsets[-1] + int(items[i].rows[j]["n_frames"]))
    total = offsets[-1]
    if not rows:
        raise StoreError(f"the {len(items)} store(s) hold no usable track; see their errors.csv for each file's reason")
    stored = {r["track_id"] for r in rows}
    errors, warnings = _errors(items, stored)
    if (out / "DONE").exists():
        if {k: v for k, v in _read_merge(out).items() if k != "copied"} != plan:
            raise StoreError(f"{out} already holds a store (not a merge of these stores); write the merge "
                             "to a new folder")
        log.info("%s is up to date (%d tracks merged before); nothing to do", out, len(rows))
        return MergeResult(out, len(rows), errors, warnings, missing, up_to_date=True)
    config = items[0].store.feature_config
    row_bytes = config.n_mels * np.dtype(DTYPE).itemsize
    start = _resume_point(out, plan, offsets, row_bytes)
    begun = time.time()
    out.mkdir(parents=True, exist_ok=True)
    for name in _OUTPUTS:
        remove_stale_temps(out / name, older_than=begun)
    if start:
        log.info("resuming: %d of %d track(s) copied by an interrupted merge", start, len(rows))
    else:
        _checkpoint(out, plan, 0, 0)
        atomic_write_json(out / "store.json", obj=store_header(config, total=None))
    _copy_frames(out, items, [(i, j) for _, i, j in order], plan, start, offsets, row_bytes)
    write_index(out / "index.csv", rows=rows)
    atomic_write_csv(out / "errors.csv", rows=errors + warnings, fieldnames=ERROR_COLUMNS)
    atomic_write_json(out / "store.json", obj=store_header(config, total=total))
    atomic_write_text(out / "DONE", text=f"{len(rows)} tracks, {total} frames\n")
    log.info("merged %d stores into %s: %d tracks, %d unusable", len(items), out, len(rows), len(errors))
    return MergeResult(out, len(rows), errors, warnings, missing, resumed=start)


def _errors(items: list[_Input], stored: set[str]) -> tuple[list[dict], list[dict]]:
    """The merged errors.csv as prepare writes it: unusable tracks, then warnings, each in track order."""
    keyed = sorted((_key(item, i, j, e["track_id"]), e) for i, item in enumerate(items)
                   for j, e in enumerate(item.errors))
    return by_outcome([{c: e.get(c, "") for c in ERROR_COLUMNS} for _, e in keyed], stored=stored)


def _copy_frames(out: Path, items: list[_Input], order: list[tuple[int, int]], plan: dict, start: int,
                 offsets: list[int], row_bytes: int) -> None:
    """Append the frames of ``order[start:]`` to frames.f16, recording progress every CHECKPOINT_BYTES."""
    progress = bar(total=len(order) - start, desc="merge", unit="track")
    pos = offsets[start]
    unsynced = 0
    with open(out / "frames.f16", "ab") as fh:
        fh.truncate(pos * row_bytes)  # drop what a killed run wrote after its last record
        for t in range(start, len(order)):
            item = items[order[t][0]]
            frames = item.store.frames(item.rows[order[t][1]]["track_id"], dtype=DTYPE)
            fh.write(frames.tobytes())
            pos += len(frames)
            unsynced += frames.nbytes
            progress.update(1)
            if unsynced >= CHECKPOINT_BYTES and t + 1 < len(order):
                fh.flush()
                os.fsync(fh.fileno())
                _checkpoint(out, plan, t + 1, pos)
                unsynced = 0
        fh.flush()
        os.fsync(fh.fileno())
    _checkpoint(out, plan, len(order), pos)  # a kill before DONE does not copy them all again
    progress.close()


__all__ = ["merge_stores", "MergeResult"]
