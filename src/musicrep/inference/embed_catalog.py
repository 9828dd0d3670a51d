"""Song vectors of a catalog under one or more models, each track's audio read once.

What ``musicrep index build`` and ``index add`` embed with. Decoding dominates
(an index build of the games corpus that decoded its audio once per run took
79.5 s, against 5.0 s reading its prepared store), so audio is never decoded
once per model:

1. ``store`` given: every model reads the tracks' log-mel from that feature store;
   catalog tracks the store lacks are skipped with the reason "not in the store".
2. else, a *recorded* store: a run's ``run.json`` names the store it was trained
   on. When that store holds some of the catalog's tracks (same track id *and*
   same audio file) with the models' feature settings, those tracks are read
   from it; feature stores record no catalog, so this is the only record there is.
3. the remaining tracks are decoded once per file, and each decoded file's
   segments go through every model before the next file is read.

Both ways give the same vector up to float rounding (:mod:`musicrep.inference.embed`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from .. import progress
from ..data.catalog import Catalog, Track
from ..data.store import FeatureStore, open_store
from ..errors import AudioError, MusicrepError
from ..evaluation.runs import run_store_path
from ..training.checkpoint import training_run
from .batching import segment_chunks, segmented_files, torch_threads
from .discovery import key_of
from .embed import Embedding, EmbeddingModel
from .store_embeddings import embed_store

log = logging.getLogger(__name__)

#: The hint logged when audio is decoded because no store was given or found.
STORE_HINT = ("prepare the catalog once (`musicrep prepare CATALOG -o STORE`) and pass --store STORE to read "
              "features instead of decoding audio")


@dataclasses.dataclass
class CatalogVectors:
    """What :func:`embed_catalog` found.

    Attributes
    ----------
    vectors : concept -> {track_id: np.ndarray [shape=(D_c,), float32]}
    skipped : rows ``{track_id, path, concept, reason}``, one per concept that could not embed a track
    from_store : how many tracks were read from a feature store
    decoded : how many audio files were decoded
    store : the store read from, if any
    """

    vectors: dict[str, dict[str, np.ndarray]]
    skipped: list[dict]
    from_store: int = 0
    decoded: int = 0
    store: Path | None = None


def embed_catalog(
    *,
    models: Mapping[str, EmbeddingModel],
    catalog: Catalog,
    store: FeatureStore | str | Path | None = None,
    workers: int = 1,
) -> CatalogVectors:
    """Embed every track of ``catalog`` with every model (see the module doc for where features come from).

    Parameters
    ----------
    models : concept -> loaded model
    catalog : the tracks
    store : FeatureStore or folder to read every track from (no audio is decoded then)
    workers : decoding threads

    Returns
    -------
    CatalogVectors
        Every catalog id is in each concept's vectors or named in ``skipped``.
    """
    out = CatalogVectors(vectors={c: {} for c in models}, skipped=[])
    if store is not None:
        store = open_store(store)
        held = set(store.track_ids)
        ids = [t.track_id for t in catalog if t.track_id in held]
        out.skipped += [{"track_id": t.track_id, "path": t.path, "concept": c, "reason": "not in the store"}
                        for c in models for t in catalog if t.track_id not in held]
        _read_store(out, models, store, ids, cache=True)
        return out
    found = recorded_store(models=list(models.values()), catalog=catalog)
    rest = list(catalog)
    if found is not None:
        store, ids = found
        # The cache holds the whole store: worth it only when the catalog is most of it.
        _read_store(out, models, store, ids, cache=2 * len(ids) >= len(store))
        covered = set(ids)
        rest = [t for t in catalog if t.track_id not in covered]
        log.info("read %d of %d tracks from %s (the feature store a run was trained on); decoding the other %d",
                 len(ids), len(catalog), store.path, len(rest))
    elif rest:
        log.info("decoding %d audio file(s) once for %d model(s); %s",
                 len({t.path for t in rest}), len(models), STORE_HINT)
    _decode(out, models, rest, workers=workers)
    return out


def _read_store(out: CatalogVectors, models: Mapping[str, EmbeddingModel], store: FeatureStore, ids: list[str], *,
                cache: bool) -> None:
    for concept, model in models.items():
        got_ids, vectors = embed_store(model, store=store, track_ids=ids, cache=cache)
        out.vectors[concept].update(zip(got_ids, vectors))
    out.from_store += len(ids)
    out.store = Path(store.path)


def recorded_store(*, models: Sequence[EmbeddingModel], catalog: Catalog) -> tuple[FeatureStore, list[str]] | None:
    """``(FeatureStore, track ids it holds of the catalog)`` from the models' runs, or None.

    A candidate is the store a model's run was trained on (``RUN/run.json``). It
    is used when its feature settings are every model's and it holds catalog
    tracks under the same id and the same audio file (resolved path); the one
    holding most of them wins.
    """
    candidates: list[Path] = []
    for model in models:
        run = training_run(model.checkpoint) if model.checkpoint is not None and not model.shipped else None
        path = run_store_path(run) if run is not None else None
        if path is not None and path not in candidates:
            candidates.append(path)
    best = None
    for path in candidates:
        try:
            store = open_store(path)
        except MusicrepError as exc:  # moved, deleted or damaged since training: decode instead
            log.debug("not using the recorded store %s (%s)", path, exc)
            continue
        if any(store.feature_config.hash() != m.feature_hash for m in models):
            continue
        where = {t.track_id: key_of(t.path) for t in store.catalog}
        ids = [t.track_id for t in catalog if where.get(t.track_id) == key_of(t.path)]
        if ids and (best is None or len(ids) > len(best[1])):
            best = (store, ids)
    return best


def _decode(out: CatalogVectors, models: Mapping[str, EmbeddingModel], tracks: list[Track], *, workers: int) -> None:
    """Decode each file of ``tracks`` once and embed it with every model.

    Several ids may share one file (the same recording listed twice): the file
    is embedded once and every id sharing it gets its vector, or its error.
    """
    ids_of: dict[Path, list[str]] = {}
    for t in tracks:
        ids_of.setdefault(Path(t.path), []).append(t.track_id)
    shared = sum(len(v) for v in ids_of.values() if len(v) > 1)
    if shared:
        log.info("%d catalog ids share an audio file with another id; each is indexed", shared)
    groups: dict[str, list[str]] = {}  # models of one front end share each decoded file
    for concept, model in models.items():
        groups.setdefault(model.feature_hash, []).append(concept)
    for concepts in groups.values():
        results = iter_files_together([models[c] for c in concepts], paths=list(ids_of), workers=workers)
        desc = f"embed ({', '.join(concepts)})"
        for path, result in progress.bar(results, total=len(ids_of), desc=desc, unit="file"):
            if isinstance(result, AudioError):
                log.warning("skipped %s", result)
                out.skipped += [{"track_id": tid, "path": str(path), "concept": c, "reason": str(result)}
                                for c in concepts for tid in ids_of[path]]
                continue
            for concept, emb in zip(concepts, result):
                out.vectors[concept].update({tid: emb.vector for tid in ids_of[path]})
        out.decoded += len(ids_of)


def iter_files_together(
    models: Sequence[EmbeddingModel], *, paths: Sequence[Path], workers: int = 1, prefetch: int = 8
) -> Iterator[tuple[Path, list[Embedding] | AudioError]]:
    """Embed files with several models of one front end, decoding each file once.

    Parameters
    ----------
    models : models whose ``feature_hash`` is the same
    paths : audio files
    workers : decoding threads (0 = in the calling thread)

    Yields
    ------
    (path, [Embedding per model] or AudioError)
        In input order, segments batched across files as
        :meth:`~musicrep.inference.embed.EmbeddingModel.iter_files` does.
    """
    lead = models[0]
    if any(m.feature_hash != lead.feature_hash for m in models):
        raise MusicrepError("models with other front ends cannot share decoded audio; embed them separately")
    # EmbeddingModel.iter_files for several models: the same decode-ahead and batch
    # flush (musicrep.inference.batching), so both paths cut and batch segments alike.
    threads = torch_threads(workers)
    items = segmented_files(lead._load_frames, paths=list(paths), segment_frames=lead.segment_frames, workers=workers,
                            prefetch=prefetch)
    for chunk in segment_chunks(items, batch_size=lead.batch_size):
        per_model = [list(m.encode_chunk(chunk, threads=threads)) for m in models]
        for i, ((path, frames), segs) in enumerate(chunk):
            if isinstance(segs, AudioError):
                yield path, segs
                continue
            yield path, [m.song_embedding(results[i][1], n_frames=frames.shape[0], segments=False, source=str(path))
                         for m, results in zip(models, per_model)]
