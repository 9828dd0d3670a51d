""""More like this" search over song embeddings, by artist, album or track.

Vectors are L2-normalised song embeddings, so faiss's inner product is the
cosine similarity the models were trained with. Small collections get an exact
index (``IndexFlatIP``). Above ``exact_max`` vectors an HNSW graph
(``IndexHNSWFlat``, inner product) is used instead; at build time its recall@10
against exact search is *measured* on a sample of the collection's own vectors
(each query's own id removed from both answers), ``efSearch`` is raised until
the target recall is met, and the whole recall curve is stored in the manifest.
If no ``efSearch`` reaches the target, the exact index is kept instead (with
the curve and the reason recorded): slow and right rather than fast and wrong.

Concept-aware search
--------------------
What "similar" means depends on the concept a model was trained on (Lee, Park &
Nam 2019): an artist model puts songs of one artist together, an album model
songs of one album (production, mix), a track model segments of one song (local
timbre and texture). The paper's joint model has no per-concept heads: its
three losses share one encoder and one embedding, so there is nothing inside
it to pick a concept with. An index may therefore hold one *sub-index per
concept*, each built from the song embeddings of the run trained on that
concept::

    musicrep index build --catalog C -o INDEX \\
        --run artist=RUN_A --run album=RUN_B --run track=RUN_C --run joint=RUN_J

``--by artist`` then searches the artist model's space, and so on. All
sub-indexes share one track table (row ``i`` is faiss id ``i`` in each), so a
query by track id works in every space; a query by audio file is embedded with
the run of the concept asked for. Without ``--by`` the joint space is used when
present (it blends the three notions, as the joint loss does), otherwise the
first concept given. A single ``--run RUN`` is named after the concept
recorded in its checkpoint.

On disk (``INDEX/``): ``<concept>.faiss`` per concept, ``tracks.csv`` (the
catalog rows in id order), ``skipped.csv`` (tracks that could not be
embedded, with the reason) and ``manifest.json``, written last. Every catalog
id is either in ``tracks.csv`` or named in ``skipped.csv`` with its reason
(two ids sharing one audio file are both indexed); ``n_tracks`` and
``n_skipped`` count ids. :meth:`SearchIndex.load` checks the manifest against
the files (kind, dimension, track count) before using either.

Building holds :func:`musicrep.locks.folder_lock` on the index folder from
before the first run is loaded, so a second writer fails at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
import logging
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .catalog import COLUMNS, Catalog
from .errors import AudioError, MusicrepError
from .io import atomic_path, atomic_write_csv, atomic_write_json
from .locks import folder_lock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRACKS = "tracks.csv"
SKIPPED = "skipped.csv"
VERSION = 1
VALID_KINDS = ("auto", "exact", "hnsw")
VALID_CONCEPTS = ("artist", "album", "track", "joint")
#: Collections up to this size get an exact index with ``kind="auto"``.
EXACT_MAX = 50_000
EF_SEARCH_GRID = (16, 32, 64, 128, 256, 512, 1024, 2048)


class SearchIndexError(MusicrepError):
    """A search index is missing, incomplete, or asked for something it lacks."""


@dataclasses.dataclass(frozen=True)
class Hit:
    """One search result: the track's row in the index and its cosine similarity."""

    rank: int
    track_id: str
    similarity: float
    row: dict

    @property
    def artist(self) -> str:
        return self.row.get("artist", "")

    @property
    def album(self) -> str:
        return self.row.get("album", "")

    @property
    def title(self) -> str:
        return self.row.get("title", "")


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). [n, D] -> float32 [n, D]."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    v = v.reshape(1, -1) if v.ndim == 1 else v
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


def _faiss():
    """faiss, imported quietly (its loader logs each CPU variant it tries at INFO)."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def _exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int):
    faiss = _faiss()

    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, k)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true neighbours found. ``found``, ``truth``: int [Q, k]."""
    k = truth.shape[1]
    hits = sum(len(set(f.tolist()) & set(t.tolist()) - {-1}) for f, t in zip(found, truth))
    return hits / float(k * len(truth))


def _drop_self(ids: np.ndarray, self_ids: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for i, (row, me) in enumerate(zip(ids, self_ids)):
        kept = [j for j in row.tolist() if j != me][:k]
        out[i, : len(kept)] = kept
    return out


def build_faiss(
    vectors: np.ndarray,
    *,
    kind: str = "auto",
    exact_max: int = EXACT_MAX,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    target_recall: float = 0.95,
    n_queries: int = 1000,
    k: int = 10,
    seed: int = 0,
):
    """A faiss index over unit vectors, with its measured recall.

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, D)], L2-normalised
    kind : "exact" (IndexFlatIP), "hnsw" (IndexHNSWFlat) or "auto" (exact up to ``exact_max``)
    hnsw_m, ef_construction : HNSW graph degree and build beam
    target_recall : ``efSearch`` is the smallest of :data:`EF_SEARCH_GRID` reaching it;
        when none does, the exact index is returned (``fallback`` says why)
    n_queries : collection vectors used as queries to measure recall@k
    seed : picks the query sample

    Returns
    -------
    (faiss.Index, dict)
        The dict holds ``kind``, ``params``, ``recall_at_10`` and ``recall_curve``.
    """
    faiss = _faiss()
    if kind not in VALID_KINDS:
        raise SearchIndexError(f"index kind {kind!r} is not one of {VALID_KINDS}")
    n, d = vectors.shape
    if n == 0:
        raise SearchIndexError("no vectors to index")
    if kind == "auto":
        kind = "exact" if n <= exact_max else "hnsw"
    t0 = time.perf_counter()
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
        index.add(vectors)
        return index, {"kind": "exact", "params": {}, "recall_at_10": 1.0, "recall_curve": {},
                       "build_seconds": round(time.perf_counter() - t0, 3)}
    index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(vectors)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    qids = np.sort(rng.choice(n, size=min(n_queries, n), replace=False))
    queries = vectors[qids]
    kk = min(k, n - 1) if n > 1 else 1
    _, truth = _exact_neighbours(vectors, queries, kk + 1)
    truth = _drop_self(truth, qids, kk)
    curve: dict[str, float] = {}
    chosen = EF_SEARCH_GRID[-1]
    for ef in EF_SEARCH_GRID:
        index.hnsw.efSearch = ef
        _, found = index.search(queries, kk + 1)
        curve[str(ef)] = round(recall_at_k(_drop_self(found, qids, kk), truth), 4)
        if curve[str(ef)] >= target_recall:
            chosen = ef
            break
    index.hnsw.efSearch = chosen
    info = {
        "kind": "hnsw",
        "params": {"M": hnsw_m, "efConstruction": ef_construction, "efSearch": chosen},
        "recall_at_10": curve[str(chosen)],
        "recall_curve": curve,
        "recall_queries": int(len(qids)),
        "build_seconds": round(build_s, 3),
    }
    if curve[str(chosen)] < target_recall:
        # Better slow than wrong: keep exact search, and the evidence of why.
        log.warning("HNSW recall@%d %.3f is below the target %.2f even at efSearch=%d; using exact search",
                    kk, curve[str(chosen)], target_recall, chosen)
        exact = faiss.IndexFlatIP(d)
        exact.add(vectors)
        return exact, {**info, "kind": "exact", "params": {}, "recall_at_10": 1.0,
                       "fallback": f"HNSW {info['params']} reached recall@10 {curve[str(chosen)]} < {target_recall}"}
    return index, info


class SearchIndex:
    """A built index: one faiss sub-index per concept over one track table.

    Load with :meth:`load`; build with :func:`build_index` or :func:`build_from_runs`.
    """

    def __init__(self, path: Path, manifest: dict, rows: list[dict], indexes: dict):
        self.path = path
        self.manifest = manifest
        self.rows = rows
        self.track_ids = [r["track_id"] for r in rows]
        self._row_of = {t: i for i, t in enumerate(self.track_ids)}
        self._indexes = indexes
        self._models: dict = {}
        self._by_path: dict[str, str] | None = None

    @property
    def concepts(self) -> list[str]:
        return list(self.manifest.get("order") or self.manifest["concepts"])

    @property
    def default_concept(self) -> str:
        return self.manifest["default_concept"]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"SearchIndex({self.path}, {len(self)} tracks, concepts={self.concepts})"

    @classmethod
    def load(cls, path: str | Path) -> "SearchIndex":
        """Open an index folder; raises :class:`SearchIndexError` if it is incomplete."""
        import csv

        faiss = _faiss()
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise SearchIndexError(f"{path}: not a finished index (no {MANIFEST}); run `musicrep index build` again")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SearchIndexError(f"{mpath}: not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("version") != VERSION:
            version = manifest.get("version") if isinstance(manifest, dict) else None
            raise SearchIndexError(f"{mpath}: index version {version} is not {VERSION}; rebuild it")
        try:
            with open(path / TRACKS, encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and "track_id" not in rows[0]:
                raise ValueError("no track_id column")
            concepts = {c: (meta, path / meta["file"]) for c, meta in manifest["concepts"].items()}
            if manifest.get("default_concept") not in concepts:
                raise KeyError("default_concept")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # also UnicodeDecodeError
            raise SearchIndexError(f"{path}: damaged index ({type(exc).__name__}: {exc}); "
                                   "run `musicrep index build --overwrite` again") from None
        if manifest.get("n_tracks", len(rows)) != len(rows):
            raise SearchIndexError(f"{mpath}: n_tracks is {manifest.get('n_tracks')!r} but {TRACKS} has "
                                   f"{len(rows)} rows; the index is damaged: rebuild it with --overwrite")
        indexes = {}
        for concept, (meta, fpath) in concepts.items():
            try:
                index = faiss.read_index(str(fpath))
            except RuntimeError as exc:
                raise SearchIndexError(f"{fpath}: cannot read the faiss index ({str(exc).splitlines()[0]})") from None
            if index.ntotal != len(rows):
                raise SearchIndexError(f"{fpath}: holds {index.ntotal} vectors but {TRACKS} has {len(rows)} rows; rebuild")
            _check_concept(faiss, index, meta, where=f"{mpath} (concept {concept!r}, file {fpath.name})")
            if meta["kind"] == "hnsw":
                index.hnsw.efSearch = int(meta["params"]["efSearch"])
            indexes[concept] = index
        return cls(path, manifest, rows, indexes)

    def _concept(self, by: str | None) -> str:
        by = by or self.default_concept
        if by not in self._indexes:
            raise SearchIndexError(
                f"{self.path}: no {by!r} sub-index (it has {', '.join(self.concepts)}); "
                f"build with --run {by}=RUN_TRAINED_ON_{by.upper()}"
            )
        return by

    def vector(self, track_id: str, *, by: str | None = None) -> np.ndarray:
        """Stored unit vector [D] of an indexed track in the ``by`` space."""
        if track_id not in self._row_of:
            raise SearchIndexError(f"{self.path}: no track with id {track_id!r}")
        return self._indexes[self._concept(by)].reconstruct(self._row_of[track_id])

    def search(self, queries: np.ndarray, *, k: int = 10, by: str | None = None,
               exclude: Sequence[str | None] | None = None) -> list[list[Hit]]:
        """Nearest tracks by cosine similarity.

        Parameters
        ----------
        queries : np.ndarray [shape=(D,) or (Q, D)], normalised here
        k : neighbours per query
        by : concept sub-index ("artist", "album", "track", "joint"); default see module doc
        exclude : per query, a track id to leave out (the query itself)

        Returns
        -------
        list (Q) of lists of :class:`Hit`, most similar first
        """
        concept = self._concept(by)
        q = normalize(queries)
        index = self._indexes[concept]
        if q.shape[1] != index.d:
            raise SearchIndexError(f"{self.path}: query has {q.shape[1]} dimensions, the {concept} index {index.d}")
        extra = 1 if exclude is not None else 0
        sims, ids = index.search(q, min(k + extra, len(self)))
        out = []
        for qi in range(len(q)):
            skip = exclude[qi] if exclude is not None else None
            hits = []
            for sim, i in zip(sims[qi], ids[qi]):
                if i < 0 or self.track_ids[i] == skip:
                    continue
                hits.append(Hit(rank=len(hits) + 1, track_id=self.track_ids[i], similarity=float(sim), row=self.rows[i]))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    def search_track(self, track_id: str, *, k: int = 10, by: str | None = None) -> list[Hit]:
        """Neighbours of an indexed track (itself excluded)."""
        return self.search(self.vector(track_id, by=by), k=k, by=by, exclude=[track_id])[0]

    def model(self, by: str | None = None):
        """The :class:`~musicrep.embed.EmbeddingModel` of a concept, loaded once."""
        from .embed import load

        concept = self._concept(by)
        if concept not in self._models:
            meta = self.manifest["concepts"][concept]
            ckpt = meta.get("checkpoint")
            if not ckpt:
                raise SearchIndexError(f"{self.path}: the {concept} sub-index records no checkpoint to embed new audio")
            # an index built from an unfinished run (said so in its manifest) queries with that run
            self._models[concept] = load(ckpt, allow_unfinished=bool(meta.get("unfinished")))
        return self._models[concept]

    def search_file(self, path: str | Path, *, k: int = 10, by: str | None = None) -> list[Hit]:
        """Neighbours of an audio file, embedded with the run of the concept asked for.

        When the file itself is indexed (same resolved path), it is left out.
        """
        from .embed_job import key_of

        vector = self.model(by).embed_file(path).vector
        if self._by_path is None:
            self._by_path = {key_of(r["path"]): r["track_id"] for r in self.rows if r.get("path")}
        me = self._by_path.get(key_of(path))
        return self.search(vector, k=k, by=by, exclude=[me])[0]

    def query(self, query: str, *, k: int = 10, by: str | None = None) -> list[Hit]:
        """``query`` is an indexed track id, or else an audio file path."""
        if query in self._row_of:
            return self.search_track(query, k=k, by=by)
        if Path(query).is_file():
            return self.search_file(query, k=k, by=by)
        raise SearchIndexError(f"{query!r} is neither a track id in {self.path} nor an audio file")


def _check_concept(faiss, index, meta: Mapping, *, where: str) -> None:
    """The manifest's entry for one sub-index agrees with the faiss file it names.

    A manifest saying ``hnsw`` over a flat index (or the reverse) would fail
    deep inside faiss, or search with settings the index does not have.
    """
    kind = meta.get("kind")
    is_hnsw = isinstance(index, faiss.IndexHNSW)
    is_flat = isinstance(index, faiss.IndexFlat)
    if kind not in ("exact", "hnsw"):
        raise SearchIndexError(f"{where}: kind {kind!r} is not 'exact' or 'hnsw'; rebuild the index with --overwrite")
    if (kind == "hnsw" and not is_hnsw) or (kind == "exact" and not is_flat):
        raise SearchIndexError(f"{where}: the manifest says kind {kind!r} but the file holds a "
                               f"{type(index).__name__}; the index is damaged: rebuild it with --overwrite")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise SearchIndexError(f"{where}: the file's metric is not inner product; rebuild the index with --overwrite")
    if meta.get("dim") != index.d:
        raise SearchIndexError(f"{where}: the manifest says dim {meta.get('dim')!r} but the file holds "
                               f"{index.d}-dimensional vectors; rebuild the index with --overwrite")
    if kind == "hnsw":
        params = meta.get("params")
        ef = params.get("efSearch") if isinstance(params, dict) else None
        if not isinstance(ef, int) or isinstance(ef, bool) or ef < 1:
            raise SearchIndexError(f"{where}: params.efSearch is {ef!r}, not a positive integer; "
                                   "rebuild the index with --overwrite")


def _row(track) -> dict:
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
    runs : concept -> {"run", "checkpoint", "checkpoint_sha256"} for querying by file
    skipped : rows ``{track_id, path, reason}`` of tracks left out
    default_concept : the space searched without ``by``
    overwrite : replace an existing index
    faiss_kwargs : passed to :func:`build_faiss`

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
        return _build_index_locked(out=out, rows=rows, vectors=vectors, runs=runs, skipped=skipped,
                                   default_concept=default_concept, overwrite=overwrite, **faiss_kwargs)


def _build_index_locked(*, out: Path, rows, vectors, runs, skipped, default_concept, overwrite,
                        **faiss_kwargs) -> SearchIndex:
    if (out / MANIFEST).exists() and not overwrite:
        raise SearchIndexError(f"{out}: an index is already there; pass overwrite=True (--overwrite) to replace it")
    if not vectors:
        raise SearchIndexError(f"{out}: no concept to index")
    n = len(rows)
    if n == 0:
        raise SearchIndexError(f"{out}: no track could be embedded; nothing to index")
    dupes = [t for t, k in Counter(str(r["track_id"]) for r in rows).items() if k > 1]
    if dupes:
        dupe = dupes[0]
        raise SearchIndexError(f"{out}: track id {dupe!r} is given more than once; each row needs its own id")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # the marker goes first, comes back last
    faiss = _faiss()

    concepts = {}
    for concept, v in vectors.items():
        v = normalize(v)
        if v.shape[0] != n:
            raise SearchIndexError(f"{out}: {concept} has {v.shape[0]} vectors for {n} tracks")
        index, info = build_faiss(v, **faiss_kwargs)
        fname = f"{concept}.faiss"
        with atomic_path(out / fname, suffix=".faiss") as tmp:
            faiss.write_index(index, str(tmp))
        concepts[concept] = {"file": fname, "dim": int(v.shape[1]), **info, **dict((runs or {}).get(concept, {}))}
        log.info("%s: %s index over %d x %d, recall@10 %.3f", concept, info["kind"], n, v.shape[1], info["recall_at_10"])
    columns: dict[str, None] = dict.fromkeys(COLUMNS)
    for r in rows:
        columns.update(dict.fromkeys(r))
    atomic_write_csv(out / TRACKS, rows, list(columns))
    atomic_write_csv(out / SKIPPED, skipped, ["track_id", "path", "concept", "reason"])
    if default_concept is None:
        default_concept = "joint" if "joint" in concepts else next(iter(concepts))
    atomic_write_json(
        out / MANIFEST,
        {"version": VERSION, "n_tracks": n, "n_skipped": len({r["track_id"] for r in skipped}),
         "default_concept": default_concept,
         "order": list(concepts), "concepts": concepts, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )
    return SearchIndex.load(out)


def parse_runs(specs: Sequence[str]) -> dict[str, str | None]:
    """``["RUN"]`` or ``["artist=RUN_A", "album=RUN_B", ...]`` -> {concept or None: run}."""
    out: dict[str | None, str] = {}
    for spec in specs:
        concept, sep, run = spec.partition("=")
        key = concept.strip() if sep else None
        run = run if sep else spec
        if key is not None and key not in VALID_CONCEPTS:
            raise SearchIndexError(f"--run {spec}: concept {key!r} is not one of {VALID_CONCEPTS}")
        if key in out:
            raise SearchIndexError(f"--run {spec}: concept {key or '(unnamed)'} given twice")
        out[key] = run
    return out


def build_from_runs(
    *,
    runs: Mapping[str | None, str | Path],
    catalog: Catalog | str | Path,
    out: str | Path,
    store=None,
    overwrite: bool = False,
    workers: int = 1,
    allow_unfinished: bool = False,
    **faiss_kwargs,
) -> SearchIndex:
    """Embed a catalog with one or more runs and index it (see module doc).

    Parameters
    ----------
    runs : concept -> run folder or checkpoint; a ``None`` key takes the
        concept recorded in the checkpoint
    catalog : Catalog or catalog CSV
    out : index folder
    store : FeatureStore (or folder) to embed from instead of decoding audio;
        tracks of the catalog missing from it are skipped
    workers : decoding threads when embedding files
    allow_unfinished : index with runs whose training did not finish (no
        ``DONE``); the manifest marks their sub-indexes ``"unfinished": true``

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
        if (out / MANIFEST).exists() and not overwrite:  # before minutes of embedding, not after
            raise SearchIndexError(f"{out}: an index is already there; pass overwrite=True (--overwrite) to replace it")
        return _build_from_runs_locked(runs=runs, catalog=catalog, out=out, store=store, overwrite=overwrite,
                                       workers=workers, allow_unfinished=allow_unfinished, **faiss_kwargs)


def _build_from_runs_locked(*, runs, catalog, out: Path, store, overwrite: bool, workers: int,
                            allow_unfinished: bool, **faiss_kwargs) -> SearchIndex:
    from . import catalog as catalog_mod
    from .embed import load

    cat = catalog if isinstance(catalog, Catalog) else catalog_mod.read_csv(catalog)
    if store is not None and not hasattr(store, "frames"):
        from .store import FeatureStore

        store = FeatureStore(store)
    per_concept: dict[str, dict[str, np.ndarray]] = {}
    meta: dict[str, dict] = {}
    skipped: list[dict] = []
    for key, run in runs.items():
        model = load(run, allow_unfinished=allow_unfinished)
        concept = key or model.concept or "default"
        if concept in per_concept:
            raise SearchIndexError(f"concept {concept!r} given twice (the checkpoint of {run} says {model.concept!r})")
        meta[concept] = {"run": str(Path(run).resolve()), "checkpoint": str(model.checkpoint),
                         "checkpoint_sha256": model.checkpoint_sha(), "unfinished": model.unfinished}
        embed = _embed_from_store if store is not None else _embed_from_files
        per_concept[concept], lost = embed(model, cat, store=store, concept=concept, workers=workers)
        skipped += lost
    # Only tracks embedded by every run: one table serves all sub-indexes.
    common = [t for t in cat if all(t.track_id in v for v in per_concept.values())]
    named = {r["track_id"] for r in skipped}
    unaccounted = [t.track_id for t in cat if t.track_id not in named and not all(
        t.track_id in v for v in per_concept.values())]
    if unaccounted:  # the printed count must be the catalog, less the ids named in skipped.csv
        raise SearchIndexError(f"{out}: {len(unaccounted)} catalog id(s) were neither embedded nor skipped with a "
                               f"reason, e.g. {unaccounted[0]!r}; this is a bug, please report it")
    rows = [_row(t) for t in common]
    vectors = {c: np.stack([v[t.track_id] for t in common]) if common else np.zeros((0, 1), np.float32)
               for c, v in per_concept.items()}
    return build_index(out=out, rows=rows, vectors=vectors, runs=meta, skipped=skipped, overwrite=overwrite,
                       **faiss_kwargs)


def _embed_from_store(model, cat: Catalog, *, store, concept: str, workers: int) -> tuple[dict, list[dict]]:
    """``({track_id: vector}, skipped rows)`` of the catalog's tracks, from the feature store."""
    from .embed import embed_store

    in_store = set(store.track_ids)
    ids = [t.track_id for t in cat if t.track_id in in_store]
    skipped = [{"track_id": t.track_id, "path": t.path, "concept": concept, "reason": "not in the store"}
               for t in cat if t.track_id not in in_store]
    ids, vecs = embed_store(model, store, track_ids=ids)
    return dict(zip(ids, vecs)), skipped


def _embed_from_files(model, cat: Catalog, *, store, concept: str, workers: int) -> tuple[dict, list[dict]]:
    """``({track_id: vector}, skipped rows)`` of the catalog's tracks, decoding each audio file once.

    Several ids may share one file (the same recording listed twice): the file
    is embedded once and every id sharing it gets its vector, or its error.
    """
    from . import progress

    ids_of: dict[Path, list[str]] = {}
    for t in cat:
        ids_of.setdefault(Path(t.path), []).append(t.track_id)
    shared = sum(len(v) for v in ids_of.values() if len(v) > 1)
    if shared:
        log.info("%d catalog ids share an audio file with another id; each is indexed", shared)
    found: dict[str, np.ndarray] = {}
    skipped: list[dict] = []
    results = model.iter_files(list(ids_of), workers=workers)
    for path, result in progress.bar(results, total=len(ids_of), desc=f"embed ({concept})", unit="file"):
        if isinstance(result, AudioError):
            log.warning("skipped %s", result)
            skipped += [{"track_id": tid, "path": str(path), "concept": concept, "reason": str(result)}
                        for tid in ids_of[path]]
        else:
            found.update({tid: result.vector for tid in ids_of[path]})
    return found, skipped
