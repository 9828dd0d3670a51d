"""The files of a feature store folder: their layout, the ``store.json`` header, ``index.csv`` and ``errors.csv``.

Shared by the code that reads a store (:mod:`musicrep.data.store`), prepares one
(:mod:`musicrep.data.prepare`) and merges shard stores (:mod:`musicrep.data.merge`),
so each file is written and read in one place.

Layout of ``STORE/`` (see docs/architecture.md)::

    frames.f16   float16 [total_frames, n_mels], C order, raw (np.memmap), append-only
    index.csv    the stored tracks' catalog rows + content_hash, offset, n_frames
    errors.csv   track_id, path, reason, detail: one row per track that could not be
                 used, or that was stored from the readable part of a damaged file
    store.json   feature settings, their hash, total_frames, n_mels, version
    DONE         written last; a store without it is incomplete
    parts/       only while preparing: per finished track a .npy and its .json (or an .err.json)
    shard.json   only in the store of one shard of a catalog (``prepare(..., shard=(K, N))``)
    merge.json   only in a store made by :func:`~musicrep.data.merge.merge_stores`: what it joined
"""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..config import FeatureConfig, _from_dict, to_dict
from ..errors import DISK_FULL_ERRNOS, ConfigError, StoreError
from ..io import atomic_write_csv
from .catalog import COLUMNS

VERSION = 1
DTYPE = np.float16
ERROR_COLUMNS = ("track_id", "path", "reason", "detail")
#: The columns index.csv holds after the catalog's own.
INDEX_TAIL = ("content_hash", "offset", "n_frames")
#: errors.csv reason of a track stored from the readable part of a damaged file.
PARTIAL_REASON = "damaged audio, readable part kept"


@contextmanager
def disk_full_is_a_store_error(store: Path) -> Iterator[None]:
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


def _read_csv_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_index(store: Path) -> list[dict]:
    """The rows of ``store/index.csv`` as strings; ``[]`` when there is none yet."""
    return _read_csv_rows(store / "index.csv")


def read_errors(store: Path) -> list[dict]:
    """The rows of ``store/errors.csv`` (track_id, path, reason, detail); ``[]`` when there is none."""
    return _read_csv_rows(store / "errors.csv")


def write_index(path: Path, *, rows: list[dict]) -> None:
    """Write index.csv: the catalog's columns, then extra catalog columns, then :data:`INDEX_TAIL`."""
    extra = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in COLUMNS and c not in INDEX_TAIL]
    atomic_write_csv(path, rows=rows, fieldnames=list(COLUMNS) + extra + list(INDEX_TAIL))


def by_outcome(rows: Iterable[dict], *, stored: set[str]) -> tuple[list[dict], list[dict]]:
    """Split errors.csv rows into (unusable tracks, warnings of stored tracks), each in the given order."""
    rows = list(rows)
    return [r for r in rows if r["track_id"] not in stored], [r for r in rows if r["track_id"] in stored]


def store_header(config: FeatureConfig, *, total: int | None) -> dict:
    """The ``store.json`` of a store of ``total`` frames (None while it is being written)."""
    return {
        "version": VERSION,
        "feature_config": to_dict(config),
        "feature_hash": config.hash(),
        "n_mels": config.n_mels,
        "dtype": "float16",
        "total_frames": total,
    }


def read_header(store: Path) -> tuple[FeatureConfig, int]:
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
    if not isinstance(meta, dict):
        raise _edited(where, "the file is not a mapping of header fields")
    if meta.get("version") != VERSION:
        raise StoreError(f"{store} has store version {meta.get('version')}, this musicrep reads {VERSION}")
    config = _header_config(meta, where)
    n_mels = meta.get("n_mels")
    if type(n_mels) is not int or n_mels != config.n_mels:
        raise _edited(where, f"n_mels {n_mels!r} differs from feature_config.n_mels {config.n_mels}")
    if meta.get("dtype") != "float16":
        raise _edited(where, f"dtype {meta.get('dtype')!r} is not 'float16'")
    total = meta.get("total_frames")
    if type(total) is not int or total < 0:
        raise _edited(where, f"total_frames {total!r} is not a whole number >= 0")
    return config, total


def _header_config(meta: dict, where: Path) -> FeatureConfig:
    """The header's feature settings, range-checked, with the hash stored beside them."""
    if not isinstance(meta.get("feature_config"), dict):
        raise _edited(where, f"feature_config {meta.get('feature_config')!r} is not a mapping of settings")
    try:
        config = _from_dict(FeatureConfig, meta["feature_config"], prefix="feature_config.")
    except ConfigError as exc:
        raise StoreError(f"{where} is unreadable or malformed ({exc}); prepare the store again") from None
    if meta.get("feature_hash") != config.hash():
        raise _edited(where, f"feature_hash {meta.get('feature_hash')!r} does not match the stored feature "
                             f"settings (their hash is {config.hash()!r})")
    return config


def _edited(where: Path, what: str) -> StoreError:
    return StoreError(f"{where}: {what}; the header was edited or damaged: prepare the store again")
