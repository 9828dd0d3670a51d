"""Writing search indexes: build one from runs or from vectors, add tracks to one.

The folder layout and the search side are in :mod:`musicrep.inference.index`. Writing
holds :func:`musicrep.locks.folder_lock` on the index folder, and checks the
folder (an index already there without ``overwrite``, a file, a folder of
other files) before any model is loaded or any audio decoded.

Without runs, :func:`build_from_runs` indexes with the model shipped inside
the package under the concept "joint"; the manifest records it as
``"shipped": "musicrep-games-joint"`` with its SHA-256, and a query by file
loads it again (refusing another version of it).

Adding tracks (:func:`add_to_index`) embeds them with the very checkpoints the
manifest records (their SHA-256 checked) and rebuilds every faiss index with
the settings recorded at build time. The new files are a *generation*
(``tracks.N.csv``, ``CONCEPT.N.faiss``) written beside the current ones; the
manifest, replaced atomically, switches to them, and only then are the old
files removed. A reader sees the old index or the new one, and a killed
``add`` leaves the old one whole.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..data.catalog import COLUMNS, Catalog, Track, read_csv
from ..data.store import FeatureStore
from ..errors import SearchIndexError
from ..io import atomic_path, atomic_write_csv, atomic_write_json
from ..locks import folder_lock
from .embed import SHIPPED_NAME, EmbeddingModel, load
from .embed_catalog import CatalogVectors, embed_catalog
from .faiss_index import build_faiss, normalize, write_faiss
from .index import MANIFEST, SKIPPED, VALID_CONCEPTS, VERSION, SearchIndex

log = logging.getLogger(__name__)

SKIPPED_COLUMNS = ("track_id", "path", "concept", "reason")
#: File names an index folder may hold; anything else means the folder is not an index's.
_INDEX_FILE = re.compile(r"(manifest\.json|skipped\.csv|tracks(\.\d+)?\.csv|[^/]+\.faiss|\..+\.tmp)")
#: What a manifest keeps of a sub-index's model (:func:`model_entry`); the rest describes its faiss file.
MODEL_KEYS = ("run", "checkpoint", "checkpoint_sha256", "unfinished", "shipped")
#: Keyword arguments of :func:`~musicrep.inference.faiss_index.build_faiss` an index records, for ``add``.
FAISS_SETTINGS = ("kind", "exact_max", "hnsw_m", "ef_construction", "ivf_nlist", "pq_m", "refine_factor",
                  "target_recall", "n_queries", "k", "seed")


def check_output(out: Path, *, overwrite: bool) -> None:
    """Refuse, before any work, an output that is a file, an index (without ``overwrite``) or a folder of other files."""
    if out.exists() and not out.is_dir():
        raise SearchIndexError(f"{out} is a file; give a folder for the index")
    if (out / MANIFEST).exists() and not overwrite:
        raise SearchIndexError(f"{out}: an index is already there; pass overwrite=True (--overwrite) to replace it, "
                               "or `musicrep index add` to add tracks to it")
    if out.is_dir() and not overwrite:
        foreign = sorted(p.name for p in out.iterdir() if not _INDEX_FILE.fullmatch(p.name))
        if foreign:
            raise SearchIndexError(f"{out} holds files that are not an index's (e.g. {foreign[0]!r}); give a new or "
                                   "empty folder, or pass --overwrite to write the index beside them")


def _row(track: Track) -> dict:
    row = track.as_row()
    return {k: ("" if v is None else str(v)) for k, v in row.items()}


def build_index(
    *,
    out: str | Path,
    rows: Sequence[Mapping],
    vectors: Mapping[str, np.ndarray],
    runs: Mapping[str, Mapping] | None = None,
    skipped: Sequence[Mapping] = (),
    default_concept: str | None = None,
    overwrite: bool = False,
    **faiss_kwargs,
) -> SearchIndex:
    """Write an index folder from ready vectors.

    Parameters
    ----------
    out : index folder
    rows : per track, a mapping with at least ``track_id`` (catalog columns), id order
    vectors : concept -> np.ndarray [shape=(n, D_c)], row ``i`` for ``rows[i]``
    runs : concept -> {"run", "checkpoint", "checkpoint_sha256", ...} for querying by file
    skipped : rows ``{track_id, path, concept, reason}`` of tracks left out
    default_concept : the space searched without ``by``
    overwrite : replace an existing index
    faiss_kwargs : passed to :func:`~musicrep.inference.faiss_index.build_faiss`, and recorded for ``add``

    Returns
    -------
    SearchIndex (as loaded back from disk)

    Raises
    ------
    FolderLockedError
        when another process is writing ``out``
    """
    out = Path(out)
    with folder_lock(out):
        check_output(out, overwrite=overwrite)
        return _build_index_locked(out=out, rows=rows, vectors=vectors, runs=runs, skipped=skipped,
                                   default_concept=default_concept, **faiss_kwargs)


def _build_index_locked(*, out: Path, rows, vectors, runs, skipped, default_concept, **faiss_kwargs) -> SearchIndex:
    unknown = set(faiss_kwargs) - set(FAISS_SETTINGS)
    if unknown:
        raise SearchIndexError(f"unknown index setting(s) {sorted(unknown)}; known: {FAISS_SETTINGS}")
    if not vectors:
        raise SearchIndexError(f"{out}: no concept to index")
    if not rows:
        raise SearchIndexError(f"{out}: no track could be embedded; nothing to index")
    dupes = [t for t, k in Counter(str(r["track_id"]) for r in rows).items() if k > 1]
    if dupes:
        raise SearchIndexError(f"{out}: track id {dupes[0]!r} is given more than once; each row needs its own id")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # the marker goes first, comes back last
    if default_concept is None:
        default_concept = "joint" if "joint" in vectors else next(iter(vectors))
    manifest = {"version": VERSION, "default_concept": default_concept, "build": dict(faiss_kwargs),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return _write_generation(out, manifest, rows=list(rows), vectors=vectors, runs=runs or {}, skipped=skipped,
                             generation=0)


def _write_generation(out: Path, manifest: dict, *, rows: list, vectors: Mapping[str, np.ndarray],
                      runs: Mapping[str, Mapping], skipped: Sequence[Mapping], generation: int) -> SearchIndex:
    """Write the index files of one generation, then the manifest naming them, then drop the rest."""
    tail = "" if generation == 0 else f".{generation}"
    n = len(rows)
    concepts = {}
    for concept, v in vectors.items():
        v = normalize(v)
        if v.shape[0] != n:
            raise SearchIndexError(f"{out}: {concept} has {v.shape[0]} vectors for {n} tracks")
        index, info = build_faiss(v, **manifest.get("build", {}))
        fname = f"{concept}{tail}.faiss"
        with atomic_path(out / fname, suffix=".faiss") as tmp:
            write_faiss(index, path=tmp)
        concepts[concept] = {**dict(runs.get(concept, {})), "file": fname, "dim": int(v.shape[1]), **info}
        log.info("%s: %s index over %d x %d, recall@10 %.3f", concept, info["kind"], n, v.shape[1], info["recall_at_10"])
    columns: dict[str, None] = dict.fromkeys(COLUMNS)
    for r in rows:
        columns.update(dict.fromkeys(r))
    tracks = f"tracks{tail}.csv"
    atomic_write_csv(out / tracks, rows=rows, fieldnames=list(columns))
    atomic_write_csv(out / SKIPPED, rows=skipped, fieldnames=SKIPPED_COLUMNS)
    manifest = {**manifest, "n_tracks": n, "n_skipped": len({r["track_id"] for r in skipped}), "tracks": tracks,
                "generation": generation, "order": list(concepts), "concepts": concepts}
    atomic_write_json(out / MANIFEST, obj=manifest)
    _remove_other_generations(out, manifest)
    return SearchIndex.load(out)


def _remove_other_generations(out: Path, manifest: dict) -> None:
    keep = {manifest["tracks"], *(meta["file"] for meta in manifest["concepts"].values())}
    for f in out.iterdir():
        if f.name not in keep and re.fullmatch(r"tracks(\.\d+)?\.csv|[^.]+(\.\d+)?\.faiss", f.name):
            f.unlink(missing_ok=True)


def read_skipped(path: str | Path) -> list[dict]:
    """The rows of an index's ``skipped.csv`` ([] when it has none)."""
    try:
        with open(Path(path) / SKIPPED, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


def parse_runs(specs: Sequence[str] | None) -> dict[str, str | None]:
    """``["RUN"]`` or ``["artist=RUN_A", "album=RUN_B", ...]`` -> {concept or None: run}; none -> ``{}``."""
    out: dict[str | None, str] = {}
    for spec in specs or ():
        concept, sep, run = spec.partition("=")
        key = concept.strip() if sep else None
        run = run if sep else spec
        if key is not None and key not in VALID_CONCEPTS:
            raise SearchIndexError(f"--run {spec}: concept {key!r} is not one of {VALID_CONCEPTS}")
        if key in out:
            raise SearchIndexError(f"--run {spec}: concept {key or '(unnamed)'} given twice")
        out[key] = run
    return out


def model_entry(model: EmbeddingModel, *, run: str | Path | None) -> dict:
    """What a manifest records of the model of a sub-index, to query and add with it later."""
    entry = {"run": "" if model.shipped else str(Path(run).resolve()), "checkpoint": str(model.checkpoint),
             "checkpoint_sha256": model.checkpoint_sha(), "unfinished": model.unfinished}
    if model.shipped:
        entry["shipped"] = SHIPPED_NAME
    return entry


def build_from_runs(
    *,
    runs: Mapping[str | None, str | Path | None] | None,
    catalog: Catalog | str | Path,
    out: str | Path,
    store: FeatureStore | str | Path | None = None,
    overwrite: bool = False,
    workers: int = 1,
    allow_unfinished: bool = False,
    **faiss_kwargs,
) -> SearchIndex:
    """Embed a catalog with one or more runs and index it (see :mod:`musicrep.inference.index`).

    Parameters
    ----------
    runs : concept -> run folder or checkpoint; a ``None`` key takes the
        concept recorded in the checkpoint; empty or None: the shipped model, as "joint"
    catalog : Catalog or catalog CSV
    out : index folder
    store : FeatureStore (or folder) to embed from instead of decoding audio;
        tracks of the catalog missing from it are skipped. Without it, a store
        a run was trained on is used for the tracks it holds, and the other
        files are decoded once for all runs (:mod:`musicrep.inference.embed_catalog`)
    workers : decoding threads when embedding files
    allow_unfinished : index with runs whose training did not finish (no
        ``DONE``); the manifest marks their sub-indexes ``"unfinished": true``
    faiss_kwargs : :func:`~musicrep.inference.faiss_index.build_faiss` settings, recorded for ``add``

    Returns
    -------
    SearchIndex
        Every catalog id is in it or in ``skipped.csv`` with its reason.

    Raises
    ------
    FolderLockedError
        at once, before any run is loaded, when another process writes ``out``
    """
    out = Path(out)
    with folder_lock(out):
        check_output(out, overwrite=overwrite)  # before minutes of embedding, not after
        cat = catalog if isinstance(catalog, Catalog) else read_csv(catalog)
        models, meta = {}, {}
        for key, run in (dict(runs) if runs else {"joint": None}).items():
            model = load(run, allow_unfinished=allow_unfinished)
            concept = key or model.concept or "default"
            if concept in models:
                raise SearchIndexError(f"concept {concept!r} given twice (the checkpoint of {run} says {model.concept!r})")
            models[concept], meta[concept] = model, model_entry(model, run=run)
        got = embed_catalog(models=models, catalog=cat, store=store, workers=workers)
        rows, vectors = _embedded_rows(out, cat, got)
        return _build_index_locked(out=out, rows=rows, vectors=vectors, runs=meta, skipped=got.skipped,
                                   default_concept=None, **faiss_kwargs)


def _embedded_rows(out: Path, cat: Catalog, got: CatalogVectors) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Rows and vectors of the tracks every model embedded (one table serves all sub-indexes)."""
    per_concept = got.vectors
    common = [t for t in cat if all(t.track_id in v for v in per_concept.values())]
    named = {r["track_id"] for r in got.skipped}
    unaccounted = [t.track_id for t in cat if t.track_id not in named and not all(
        t.track_id in v for v in per_concept.values())]
    if unaccounted:  # the printed count must be the catalog, less the ids named in skipped.csv
        raise SearchIndexError(f"{out}: {len(unaccounted)} catalog id(s) were neither embedded nor skipped with a "
                               f"reason, e.g. {unaccounted[0]!r}; this is a bug, please report it")
    vectors = {c: np.stack([v[t.track_id] for t in common]) if common else np.zeros((0, 1), np.float32)
               for c, v in per_concept.items()}
    return [_row(t) for t in common], vectors


def add_to_index(
    *,
    index: str | Path,
    catalog: Catalog | str | Path,
    store: FeatureStore | str | Path | None = None,
    workers: int = 1,
) -> tuple[SearchIndex, int]:
    """Add a catalog's tracks to a built index, with the models and settings it records.

    Parameters
    ----------
    index : index folder (from :func:`build_from_runs`)
    catalog : Catalog or CSV of the new tracks; an id already indexed is refused
        (an id named in ``skipped.csv`` may be given again: it is retried)
    store : FeatureStore (or folder) holding the new tracks' features; else as
        :func:`build_from_runs` finds or decodes them
    workers : decoding threads

    Returns
    -------
    (SearchIndex, number of tracks added)
        New skips are appended to ``skipped.csv``.

    Raises
    ------
    SearchIndexError
        when the index is incomplete, an id is already indexed, or a recorded
        checkpoint changed since the build (nothing is written then)
    FolderLockedError
        when another process writes the index
    """
    out = Path(index)
    with folder_lock(out):
        current = SearchIndex.load(out)
        cat = catalog if isinstance(catalog, Catalog) else read_csv(catalog)
        already = [t.track_id for t in cat if t.track_id in set(current.track_ids)]
        if already:
            raise SearchIndexError(
                f"{getattr(cat, 'source', 'the catalog')}: {len(already)} track id(s) are already in {out}: "
                f"{', '.join(map(repr, already[:5]))}{' ...' if len(already) > 5 else ''}; give only new tracks "
                "(to change an indexed track, rebuild with `musicrep index build --overwrite`)")
        models = {c: current.model(c) for c in current.concepts}  # the recorded checkpoints, SHA-256 checked
        got = embed_catalog(models=models, catalog=cat, store=store, workers=workers)
        rows, vectors = _embedded_rows(out, cat, got)
        old = {c: current.all_vectors(by=c) for c in current.concepts}
        vectors = {c: np.concatenate([old[c], normalize(vectors[c])]) if rows else old[c] for c in current.concepts}
        retried = {t.track_id for t in cat}
        skipped = [r for r in read_skipped(out) if r.get("track_id") not in retried] + got.skipped
        manifest = {k: v for k, v in current.manifest.items() if k not in ("concepts", "order")}
        manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        runs = {c: {k: v for k, v in meta.items() if k in MODEL_KEYS}
                for c, meta in current.manifest["concepts"].items()}
        generation = int(current.manifest.get("generation", 0)) + 1
        index = _write_generation(out, manifest, rows=[*current.rows, *rows], vectors=vectors, runs=runs,
                                  skipped=skipped, generation=generation)
        return index, len(rows)
