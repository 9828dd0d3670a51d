"""Song embeddings of a feature store's tracks, and their cache under the run folder.

:func:`embed_store` embeds stored log-mel (the training code path) and, for a model
loaded from a checkpoint, computes the whole store once per (checkpoint, store):
``RUN/embeddings/<ckpt>-<sha>-<feature hash>-<store id>.npy`` with a ``.json``
beside it written last, the marker that the ``.npy`` is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import progress
from ..config import to_dict
from ..data.store import FeatureStore, open_store
from ..errors import StoreError
from ..io import atomic_path, atomic_write_json
from ..training.model import split_segments
from .embed import EmbeddingModel, as_model

log = logging.getLogger(__name__)

#: Version of the cache's ``.json`` format; another version is recomputed.
CACHE_VERSION = 1


def store_id(store: FeatureStore) -> str:
    """Identity of a feature store's content: hash of ``store.json`` and ``index.csv``."""
    root = Path(store.path)
    h = hashlib.sha256()
    for name in ("store.json", "index.csv"):
        try:
            h.update((root / name).read_bytes())
        except OSError as exc:
            raise StoreError(f"{root / name}: cannot read ({exc.strerror})") from None
    return h.hexdigest()[:12]


def embed_store(
    model_or_run: EmbeddingModel | str | Path,
    *,
    store: FeatureStore | str | Path,
    track_ids: Sequence[str] | None = None,
    cache: bool = True,
    allow_unfinished: bool = False,
) -> tuple[list[str], np.ndarray]:
    """Song embeddings of the tracks of a feature store (the training code path).

    Parameters
    ----------
    model_or_run : EmbeddingModel, or a run folder / checkpoint for :func:`~musicrep.inference.embed.load`
    store : FeatureStore or its folder
    track_ids : tracks to return, in this order; all of the store's by default
    cache : with a model loaded from a checkpoint, compute the whole store once
        and keep it in ``RUN/embeddings/<ckpt>-<sha>-<feature hash>-<store id>.npy``
        with a ``.json`` beside it written last (a rerun reuses it); never for the
        shipped model (the package folder is no place for caches)
    allow_unfinished : with a run folder, use it even if its training did not finish

    Returns
    -------
    track_ids : list[str] [n]
    vectors : np.ndarray [shape=(n, D), float32]
    """
    model = as_model(model_or_run, allow_unfinished=allow_unfinished)
    store = open_store(store)
    if store.feature_config.hash() != model.feature_config.hash():
        raise StoreError(
            f"{store.path}: built with features {to_dict(store.feature_config)} but the model "
            f"{model.checkpoint or ''} was trained on {to_dict(model.feature_config)}; "
            "prepare a store with the model's feature settings"
        )
    wanted = list(store.track_ids) if track_ids is None else [str(t) for t in track_ids]
    known = set(store.track_ids)
    missing = [t for t in wanted if t not in known]
    if missing:
        raise StoreError(f"{store.path}: {len(missing)} track(s) not in the store, e.g. {missing[0]!r}")
    if not cache or model.checkpoint is None or model.shipped:
        return wanted, _embed_store_tracks(model, store, wanted)
    all_ids, vectors = _cached_store_embeddings(model, store)
    row = {t: i for i, t in enumerate(all_ids)}
    return wanted, vectors[[row[t] for t in wanted]] if wanted else np.zeros((0, model.dim), np.float32)


def _embed_store_tracks(model: EmbeddingModel, store: FeatureStore, track_ids: Sequence[str]) -> np.ndarray:
    """Song vectors [n, D] of stored tracks: the mean of each one's segment vectors."""
    out = np.zeros((len(track_ids), model.dim), dtype=np.float32)
    items = ((row, split_segments(store.frames(tid), segment_frames=model.segment_frames))
             for row, tid in enumerate(progress.bar(track_ids, desc="embed store", unit="track", leave=False)))
    for row, seg_vectors in model.encode_many(items):
        model.check_finite(seg_vectors, source=f"{store.path}: track {track_ids[row]!r}")
        out[row] = seg_vectors.mean(axis=0)
    return out


def _cached_store_embeddings(model: EmbeddingModel, store: FeatureStore) -> tuple[list[str], np.ndarray]:
    """Every track of ``store`` and its vector [n, D], from the cache or computed and cached."""
    sha = model.checkpoint_sha()
    key = f"{model.checkpoint.stem}-{sha[:12]}-{store.feature_config.hash()}-{store_id(store)}"
    folder = model.run_dir / "embeddings"
    npy, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    cached = _read_cache(npy, meta_path, sha=sha, dim=model.dim)
    if cached is not None:
        return cached
    ids = list(store.track_ids)
    t0 = time.perf_counter()
    vectors = _embed_store_tracks(model, store, ids)
    _write_cache(npy, meta_path, vectors=vectors, ids=ids, model=model, store=store, started=t0)
    log.info("embedded %d stored tracks into %s", len(ids), npy)
    return ids, vectors


def _read_cache(npy: Path, meta_path: Path, *, sha: str, dim: int) -> tuple[list[str], np.ndarray] | None:
    """The cached ``(track ids, vectors)`` when complete, of this checkpoint and finite; else None."""
    if not (meta_path.is_file() and npy.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        vectors = np.load(npy, allow_pickle=False)
        if (
            meta.get("version") == CACHE_VERSION
            and meta.get("checkpoint_sha256") == sha
            and vectors.shape == (len(meta["track_ids"]), dim)
            and np.isfinite(vectors).all()
        ):
            log.debug("reusing cached store embeddings %s", npy)
            return list(meta["track_ids"]), vectors
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring damaged embedding cache %s (%s); recomputing", npy, exc)
    return None


def _write_cache(npy: Path, meta_path: Path, *, vectors: np.ndarray, ids: list[str], model: EmbeddingModel,
                 store: FeatureStore, started: float) -> None:
    """The ``.npy`` first, then its ``.json``: the marker that the ``.npy`` beside it is complete.

    ``started``: ``time.perf_counter()`` when embedding began (the ``.json`` records the seconds since).
    """
    with atomic_path(npy, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
    atomic_write_json(
        meta_path,
        obj={
            "version": CACHE_VERSION,
            "checkpoint": str(model.checkpoint),
            "checkpoint_sha256": model.checkpoint_sha(),
            "store": str(Path(store.path).resolve()),
            "store_id": store_id(store),
            "feature_hash": store.feature_config.hash(),
            "shape": list(vectors.shape),
            "seconds": round(time.perf_counter() - started, 3),
            "track_ids": ids,
        },
    )
