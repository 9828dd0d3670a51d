"""The on-disk feature store: every track's log-mel in one float16 memmap.

Layout of ``STORE/`` (see docs/architecture.md)::

    frames.f16   float16 [total_frames, n_mels], C order, raw (np.memmap), append-only
    index.csv    the stored tracks' catalog rows + offset, n_frames
    errors.csv   track_id, path, reason, detail: tracks that could not be used
    store.json   feature settings, their hash, total_frames, n_mels, version
    DONE         written last; a store without it is incomplete
    parts/       only while preparing: one .npy (or .err.json) per finished track

:func:`prepare` decodes every track once on a process pool and writes each
result as its own part file (atomically), so a killed run resumes where it
stopped. When every track is done, the parts are appended to ``frames.f16``
and removed. A rerun with more tracks appends them; a rerun with nothing new
does nothing; tracks stored before stay stored.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import stream_audio
from .catalog import COLUMNS, Catalog, Track, track_from_row
from .config import FeatureConfig, _from_dict, to_dict
from .errors import AudioError, ConfigError, StoreError
from .features import log_mel_stream
from .io import atomic_path, atomic_write_csv, atomic_write_json, atomic_write_text
from .progress import bar

log = logging.getLogger(__name__)

VERSION = 1
DTYPE = np.float16
ERROR_COLUMNS = ("track_id", "path", "reason", "detail")


def _part_name(track_id: str) -> str:
    return hashlib.sha1(track_id.encode("utf-8")).hexdigest()


def min_samples_for(config: FeatureConfig) -> int:
    """Fewest samples that give one full segment of ``segment_frames`` frames."""
    return (config.segment_frames - 1) * config.hop_length


def compute_track(path: str, config: FeatureConfig) -> np.ndarray:
    """Decode ``path`` and return its log-mel, float32 [T, n_mels] (streamed, bounded memory)."""
    blocks = stream_audio(path, sr=config.sample_rate, min_samples=min_samples_for(config))
    chunks = list(log_mel_stream(blocks, config=config))
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def _init_worker() -> None:
    # One BLAS/FFT thread per worker: with a pool already using every core,
    # nested threads oversubscribe them (measured: 3x slower per track).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _record_error(parts: Path, track_id: str, path: str, reason: str, detail: str) -> tuple[str, None, str, str]:
    """Mark a track as unusable (its ``.err.json`` part) and return the worker's error result."""
    atomic_write_json(
        (parts / _part_name(track_id)).with_suffix(".err.json"),
        {"track_id": track_id, "path": path, "reason": reason, "detail": detail},
    )
    return track_id, None, reason, detail


def _work(track_id: str, path: str, parts_dir: str, config_dict: dict) -> tuple[str, int | None, str, str]:
    """Worker: one track -> a part file. Returns (track_id, n_frames or None, reason, detail)."""
    config = FeatureConfig(**config_dict)
    parts = Path(parts_dir)
    try:
        mel = compute_track(path, config)
    except AudioError as exc:
        return _record_error(parts, track_id, path, exc.reason, exc.detail)
    except Exception as exc:  # one bad file never kills the job
        return _record_error(parts, track_id, path, "unexpected error", f"{type(exc).__name__}: {exc}")
    with atomic_path((parts / _part_name(track_id)).with_suffix(".npy")) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, mel.astype(DTYPE))
    return track_id, int(mel.shape[0]), "", ""


@dataclass
class PrepareResult:
    """What :func:`prepare` did. ``errors`` rows: track_id, path, reason, detail."""

    path: Path
    stored: int
    new: int
    errors: list[dict] = field(default_factory=list)
    skipped_existing: int = 0


def _read_index(store: Path) -> list[dict]:
    index = store / "index.csv"
    if not index.exists():
        return []
    with open(index, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _read_errors(store: Path) -> list[dict]:
    path = store / "errors.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _check_settings(store: Path, config: FeatureConfig) -> None:
    meta_path = store / "store.json"
    if not meta_path.exists():
        return
    meta = json.loads(meta_path.read_text())
    if meta.get("feature_hash") != config.hash():
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
    import sys

    if "torch" in sys.modules or "fork" not in mp.get_all_start_methods():
        return "spawn"
    return "fork"


def _ping() -> bool:
    return True


def _run_pool(todo: list[Track], parts: Path, config: FeatureConfig, workers: int) -> None:
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
            finished(t, *_work(t.track_id, t.path, str(parts), cfg)[1:])
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
        with cf.ProcessPoolExecutor(max_workers=round_workers, mp_context=ctx, initializer=_init_worker) as pool:
            try:
                pool.submit(_ping).result()
            except cf.process.BrokenProcessPool:
                raise StoreError(
                    "could not start worker processes (a script read from stdin or an unguarded "
                    "__main__ cannot be re-imported by them); pass workers=0 to prepare in this process"
                ) from None
            futures = {pool.submit(_work, t.track_id, t.path, str(parts), cfg): t for t in pending}
            isolated = round_workers == 1
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
                    result = _record_error(parts, track.track_id, track.path, "decoder crashed", "the worker process died on it")
                finished(track, *result[1:])
        pending = retry
        if pending and not isolated:
            log.warning("a worker process died; retrying %d unfinished track(s) one at a time", len(pending))
        round_workers = workers if isolated else 1
    progress.close()


def _append(store: Path, catalog: Catalog, old_rows: list[dict], config: FeatureConfig) -> tuple[list[dict], list[dict]]:
    """Append the finished parts to frames.f16 and return (all index rows, new error rows).

    Old frames never move: the file is cut back to the length the old index
    covers (dropping what an interrupted append left) and the new tracks are
    appended in catalog order. Until the new index.csv lands, the old one
    still describes a valid prefix of the file, so a kill at any point is safe.
    """
    parts = store / "parts"
    rows = [dict(r) for r in old_rows]
    errors = []
    old_ids = {r["track_id"] for r in old_rows}
    frames_path = store / "frames.f16"
    row_bytes = config.n_mels * np.dtype(DTYPE).itemsize
    pos = sum(int(r["n_frames"]) for r in old_rows)
    with open(frames_path, "ab") as fh:
        fh.truncate(pos * row_bytes)
        for t in catalog:
            if t.track_id in old_ids:
                continue
            stem = parts / _part_name(t.track_id)
            if stem.with_suffix(".npy").exists():
                try:  # never unpickle: a part holding objects is refused, not executed
                    arr = np.load(stem.with_suffix(".npy"), allow_pickle=False)
                except (OSError, ValueError, EOFError) as exc:
                    raise StoreError(f"{stem.with_suffix('.npy')} is unreadable ({exc}); delete it and rerun") from None
                if arr.dtype != DTYPE or arr.ndim != 2 or arr.shape[1] != config.n_mels:
                    raise StoreError(f"{stem.with_suffix('.npy')} is not a [frames, {config.n_mels}] float16 part; delete it and rerun")
                fh.write(np.ascontiguousarray(arr).tobytes())
                rows.append({**t.as_row(), "offset": pos, "n_frames": arr.shape[0]})
                pos += arr.shape[0]
            elif stem.with_suffix(".err.json").exists():
                errors.append(json.loads(stem.with_suffix(".err.json").read_text()))
        fh.flush()
        os.fsync(fh.fileno())
    return rows, errors


def prepare(
    catalog: Catalog,
    out_dir: str | Path,
    *,
    config: FeatureConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    retry_errors: bool = False,
) -> PrepareResult:
    """Decode every track of ``catalog`` once and store its log-mel in ``out_dir``.

    Parameters
    ----------
    catalog : the tracks to store (their ``path`` must be readable audio)
    out_dir : the store folder (created)
    config : front-end settings; the paper's by default
    workers : processes; all cores by default; 0 prepares in this process
    overwrite : delete a store made with other settings instead of refusing
    retry_errors : try again the tracks an earlier run could not use

    Returns
    -------
    PrepareResult
        Raises :class:`StoreError` when no track at all could be used.
    """
    config = config or FeatureConfig()
    store = Path(out_dir)
    if overwrite and store.exists():
        shutil.rmtree(store)
    store.mkdir(parents=True, exist_ok=True)
    _check_settings(store, config)
    # Tracks stored earlier stay in the store even when this catalog lacks them:
    # old frames never move (see _append).
    old_rows = _read_index(store)
    old_errors = [] if retry_errors else [e for e in _read_errors(store) if e["track_id"] in catalog]
    done_ids = {r["track_id"] for r in old_rows} | {e["track_id"] for e in old_errors}
    parts = store / "parts"
    if retry_errors and parts.exists():
        for p in parts.glob("*.err.json"):
            p.unlink()
    if (store / "DONE").exists() and all(t.track_id in done_ids for t in catalog):
        log.info("%s is up to date (%d tracks); nothing to do", store, len(old_rows))
        return PrepareResult(store, len(old_rows), 0, old_errors, skipped_existing=len(old_rows))

    parts.mkdir(exist_ok=True)
    todo = [
        t for t in catalog
        if t.track_id not in done_ids
        and not (parts / _part_name(t.track_id)).with_suffix(".npy").exists()
        and not (parts / _part_name(t.track_id)).with_suffix(".err.json").exists()
    ]
    resumed = len(catalog) - len(todo) - len(done_ids)
    if resumed:
        log.info("resuming: %d track(s) already prepared by an interrupted run", resumed)
    atomic_write_json(store / "store.json", _meta(config, None))
    (store / "DONE").unlink(missing_ok=True)
    if todo:
        _run_pool(todo, parts, config, (os.cpu_count() or 1) if workers is None else workers)
    rows, new_errors = _append(store, catalog, old_rows, config)
    errors = old_errors + new_errors
    atomic_write_csv(store / "errors.csv", errors, ERROR_COLUMNS)
    if not rows:
        raise StoreError(
            f"none of the {len(catalog)} tracks could be used; see {store / 'errors.csv'} for each file's reason"
        )
    extra = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in COLUMNS and c not in ("offset", "n_frames")]
    atomic_write_csv(store / "index.csv", rows, list(COLUMNS) + extra + ["offset", "n_frames"])
    total = sum(int(r["n_frames"]) for r in rows)
    atomic_write_json(store / "store.json", _meta(config, total))
    atomic_write_text(store / "DONE", f"{len(rows)} tracks, {total} frames\n")
    shutil.rmtree(parts, ignore_errors=True)
    log.info("stored %d tracks (%d new, %d unusable) in %s", len(rows), len(rows) - len(old_rows), len(errors), store)
    return PrepareResult(store, len(rows), len(rows) - len(old_rows), errors)


def from_arrays(out_dir: str | Path, tracks, frames, *, config: FeatureConfig | None = None) -> "FeatureStore":
    """A store from log-mels already in memory (precomputed features, tests).

    Parameters
    ----------
    out_dir : the store folder; must not hold a store yet
    tracks : sequence of :class:`~musicrep.catalog.Track`
    frames : matching sequence of np.ndarray [shape=(n_frames, n_mels)], not standardised
    config : the front-end settings the frames were made with
    """
    config = config or FeatureConfig()
    store = Path(out_dir)
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
    extra = [c for c in dict.fromkeys(k for t in tracks for k in t.extra) if c not in COLUMNS]
    atomic_write_csv(store / "index.csv", rows, list(COLUMNS) + extra + ["offset", "n_frames"])
    atomic_write_csv(store / "errors.csv", [], ERROR_COLUMNS)
    atomic_write_json(store / "store.json", _meta(config, pos))
    atomic_write_text(store / "DONE", f"{len(rows)} tracks, {pos} frames\n")
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
            raise StoreError(f"{self.path} {what}; run `musicrep prepare CATALOG -o {self.path}`")
        try:
            meta = json.loads((self.path / "store.json").read_text())
            # validated like any settings: a tampered value is named, not used
            self.feature_config = _from_dict(FeatureConfig, meta["feature_config"])
            self.total_frames = int(meta["total_frames"])
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
            raise StoreError(f"{self.path}/store.json is unreadable or malformed ({exc})") from None
        if meta.get("version") != VERSION:
            raise StoreError(f"{self.path} has store version {meta.get('version')}, this musicrep reads {VERSION}")
        index_path = self.path / "index.csv"
        if not index_path.is_file():
            raise StoreError(f"{index_path} is missing; prepare the store again")
        tracks, offsets, lengths = [], [], []
        try:
            for i, r in enumerate(_read_index(self.path), start=2):
                offsets.append(int(r.pop("offset")))
                lengths.append(int(r.pop("n_frames")))
                tracks.append(track_from_row(r, where=f"{index_path}:{i}"))
        except (KeyError, ValueError, TypeError) as exc:  # also UnicodeDecodeError
            raise StoreError(f"{index_path} is malformed ({type(exc).__name__}: {exc}); prepare the store again") from None
        self.catalog = Catalog(tracks, source=str(index_path))
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._lengths = np.asarray(lengths, dtype=np.int64)
        if len(tracks) and ((self._offsets < 0).any() or (self._lengths < 0).any()
                            or (self._offsets + self._lengths > self.total_frames).any()):
            raise StoreError(f"{index_path} points outside frames.f16 ({self.total_frames} frames); prepare the store again")
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

    def frames(self, track_id: str) -> np.ndarray:
        """The track's log-mel, float32 [n_frames, n_mels], not standardised."""
        i = self._index(track_id)
        off, n = self._offsets[i], self._lengths[i]
        return np.asarray(self._frames[off : off + n], dtype=np.float32)

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


def load_errors(path: str | Path) -> list[dict]:
    """The rows of a store's errors.csv (track_id, path, reason, detail)."""
    return _read_errors(Path(path))


__all__ = ["FeatureStore", "prepare", "from_arrays", "PrepareResult", "compute_track", "load_errors"]
