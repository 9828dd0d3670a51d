"""Reading a prepared feature store: :class:`FeatureStore` and :func:`open_store`, and a store from arrays.

A store is every track's log-mel in one float16 memmap plus its index (the
files are described in :mod:`musicrep.data.store_files`); it is written from
audio by :func:`~musicrep.data.prepare.prepare`, from log-mels already in
memory by :func:`from_arrays`, and from shard stores by
:func:`~musicrep.data.merge.merge_stores`.

``content_hash`` is the SHA-1 of a track's decoded, resampled mono samples, so
the same audio under two ids (or in two lossless containers) is found by
:func:`duplicate_groups`. :class:`FeatureStore` checks every header field and
index row against the settings' ranges and the frames file's size before it
reads a frame.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from ..config import FeatureConfig
from ..errors import StoreError
from ..io import atomic_path, atomic_write_csv, atomic_write_json, atomic_write_text
from ..locks import folder_lock
from .catalog import Catalog, Track, track_from_row
from .store_files import (
    DTYPE,
    ERROR_COLUMNS,
    disk_full_is_a_store_error,
    read_errors,
    read_header,
    read_index,
    store_header,
    write_index,
)

_HEX40 = re.compile(r"[0-9a-f]{40}")


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
    path : the store folder written by :func:`~musicrep.data.prepare.prepare`
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "DONE").exists():
            what = "is not a feature store" if not (self.path / "store.json").exists() else "is incomplete (interrupted prepare?)"
            if (self.path / "merge.json").exists():
                raise StoreError(f"{self.path} is incomplete (interrupted merge?); rerun `musicrep store merge ... -o {self.path}`")
            raise StoreError(f"{self.path} {what}; run `musicrep prepare CATALOG -o {self.path}`")
        self.feature_config, self.total_frames = read_header(self.path)
        index_path = self.path / "index.csv"
        if not index_path.is_file():
            raise StoreError(f"{index_path} is missing; prepare the store again")
        tracks, offsets, lengths, hashes = [], [], [], []
        try:
            for i, r in enumerate(read_index(self.path), start=2):
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
    decoded, resampled mono samples recorded by :func:`~musicrep.data.prepare.prepare`) is equal: the
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

    A row whose reason is :data:`~musicrep.data.store_files.PARTIAL_REASON` is a warning: that track is
    stored (from the readable part of a damaged file).
    """
    return read_errors(Path(path))


def from_arrays(out_dir: str | Path, *, tracks: Iterable[Track], frames: Iterable[np.ndarray],
                config: FeatureConfig | None = None) -> FeatureStore:
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
    with disk_full_is_a_store_error(store), folder_lock(store):
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
        write_index(store / "index.csv", rows=rows)
        atomic_write_csv(store / "errors.csv", rows=[], fieldnames=ERROR_COLUMNS)
        atomic_write_json(store / "store.json", obj=store_header(config, total=pos))
        atomic_write_text(store / "DONE", text=f"{len(rows)} tracks, {pos} frames\n")
    return FeatureStore(store)


def open_store(store: FeatureStore | str | Path) -> FeatureStore:
    """A :class:`FeatureStore` from a path, or the store itself: the one way every command opens one."""
    return store if isinstance(store, FeatureStore) else FeatureStore(Path(store))


__all__ = ["FeatureStore", "open_store", "from_arrays", "duplicate_groups", "load_errors"]
