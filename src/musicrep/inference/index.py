""""More like this" search over song embeddings, by artist, album or track.

Vectors are L2-normalised song embeddings, so faiss's inner product is the
cosine similarity the models were trained with. Small collections get an exact
index (``IndexFlatIP``). Above ``exact_max`` vectors an approximate one is used
instead (:data:`AUTO_KIND`, chosen by ``benchmarks/bench_search.py``; or asked
for: ``hnsw``, an HNSW graph; ``ivf``, IVF-Flat; ``ivfpq``, IVF-PQ re-ranked
with the full vectors). At build time its recall@10 against exact search is
*measured* on a sample of the collection's own vectors (each query's own id
removed from both answers), its search knob (HNSW ``efSearch``, IVF ``nprobe``)
is raised until the target recall is met, and the whole recall curve is stored
in the manifest, with the knob, which :meth:`SearchIndex.load` sets again. If
no value reaches the target, the exact index is kept instead (with the curve
and the reason recorded): slow and right rather than fast and wrong.

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
recorded in its checkpoint; no ``--run`` at all indexes with the model shipped
inside the package, as "joint".

Queries
-------
``--query`` is an indexed track id, an audio file (embedded with the concept's
model; left out of its own answer when it is indexed), or a fragment of an
indexed path that matches one track only. ``exclude_same="artist"`` (or
``"album"``: same artist *and* album name) drops the hits that share the
query's artist or album, so "more like this" finds other artists; it needs the
query's row in the index.

On disk (``INDEX/``): ``<concept>.faiss`` per concept, ``tracks.csv`` (the
catalog rows in id order), ``skipped.csv`` (tracks that could not be
embedded, with the reason) and ``manifest.json``, written last. Every catalog
id is either in ``tracks.csv`` or named in ``skipped.csv`` with its reason
(two ids sharing one audio file are both indexed); ``n_tracks`` and
``n_skipped`` count ids. After ``musicrep index add`` the manifest names the
files of the newest generation (``tracks.N.csv``, ``<concept>.N.faiss``).
:meth:`SearchIndex.load` checks the manifest against the files (kind,
dimension, track count) before using either, and a query by file checks that
the recorded checkpoint still has its recorded SHA-256.

Writing indexes (:func:`build_index`, :func:`build_from_runs`,
:func:`add_to_index`) is :mod:`musicrep.inference.index_build`; those names are also
reachable from here.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import SearchIndexError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRACKS = "tracks.csv"
SKIPPED = "skipped.csv"
VERSION = 1
VALID_KINDS = ("auto", "exact", "hnsw", "ivf", "ivfpq")
VALID_CONCEPTS = ("artist", "album", "track", "joint")
#: What ``exclude_same`` may name.
VALID_EXCLUDE = ("artist", "album")
#: Candidates an ambiguous path fragment lists.
SHOW_CANDIDATES = 5
#: Names that moved to :mod:`musicrep.inference.index_build`, still importable from here.
_BUILD_NAMES = ("build_index", "build_from_runs", "add_to_index", "parse_runs")
#: Collections up to this size get an exact index with ``kind="auto"``.
EXACT_MAX = 50_000
EF_SEARCH_GRID = (16, 32, 64, 128, 256, 512, 1024, 2048)
NPROBE_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
#: k-means training points per IVF list (faiss warns below 39).
IVF_TRAIN_PER_LIST = 40
#: IVF-PQ candidates re-ranked with the full vectors, per neighbour asked for. On 1M
#: vectors drawn like song embeddings (benchmarks/bench_search.py) 16 stops at recall@10
#: 0.89 whatever the nprobe (the PQ codes cannot tell the near neighbours apart); 64
#: reaches 0.957 at nprobe 8.
REFINE_FACTOR = 64
#: What ``kind="auto"`` builds above ``exact_max``. benchmarks/bench_search.py, 1M 256-d
#: vectors drawn like song embeddings, 2 cores shared with other jobs (two runs): IVF-Flat
#: builds in 28-54 s and answers 3,900-6,500 queries/s at recall@10 0.96 (nprobe 8);
#: HNSW (M 32, efConstruction 200) answers 2.2x as many at 0.99 but builds in 9-12.5 min,
#: near the 15-min goal, and `index add` rebuilds the whole index, so every addition
#: would cost that again; IVF-PQ passes 0.95 only when re-ranked with the full vectors
#: (so saves no memory) and is the slowest (2,700/s). Both fast kinds pass the goal
#: (1,000/s at 0.95) by far; IVF-Flat builds 14-20x faster.
AUTO_KIND = "ivf"



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
    return _exact_index(vectors).search(queries, k)


def recall_at_k(found: np.ndarray, *, truth: np.ndarray) -> float:
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


def default_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: about ``4 * sqrt(n)`` (4,000 at 1M), at most ``n // 39``.

    faiss's k-means wants at least 39 training points per centroid: a small
    collection split into more lists would get poorly placed, or empty, ones.
    """
    return int(max(1, min(round(4 * np.sqrt(n)), n // 39)))


def _train_sample(vectors: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` rows (all when fewer), drawn with ``seed``, for k-means: on all of 1M
    vectors it would cost minutes more and place the centroids no better."""
    n = len(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)) if size < n else slice(None)
    return np.ascontiguousarray(vectors[rows])


def _make_approximate(vectors: np.ndarray, *, kind: str, hnsw_m: int, ef_construction: int,
                      ivf_nlist: int | None, pq_m: int | None, refine_factor: int, seed: int):
    """The untuned faiss index of an approximate ``kind``, holding ``vectors``, and its build parameters."""
    faiss = _faiss()
    n, d = vectors.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(vectors)
        return index, {"M": hnsw_m, "efConstruction": ef_construction}
    nlist = int(ivf_nlist or default_nlist(n))
    size = min(n, IVF_TRAIN_PER_LIST * nlist)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        params = {"nlist": nlist}
    else:
        size = min(n, max(size, IVF_TRAIN_PER_LIST * 256))  # the PQ codebooks want as many per centroid
        index, params = _ivfpq(d, nlist=nlist, pq_m=pq_m, refine_factor=refine_factor, n_train=size)
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(_train_sample(vectors, size, seed))
    index.add(vectors)
    faiss.extract_index_ivf(index).make_direct_map()  # vector(track_id) reconstructs by id
    return index, params


def _ivfpq(d: int, *, nlist: int, pq_m: int | None, refine_factor: int, n_train: int):
    """An untrained IVF-PQ index inside a re-ranking ``IndexRefineFlat``, and its parameters.

    PQ distances alone rank the 10 nearest too roughly for 0.95 recall; the
    refine step re-scores ``refine_factor * k`` candidates with the full vectors
    (kept beside the codes, which also keeps ``index add`` and ``vector()`` exact).
    """
    faiss = _faiss()
    m = int(pq_m or _default_pq_m(d))
    if d % m:
        raise SearchIndexError(f"pq_m={m} does not divide the dimension {d}; give a divisor of {d}")
    # 256 centroids per sub-quantiser (8 bits) need 40 x 256 training vectors; a small
    # collection gets fewer centroids instead of faiss's warning and empty ones
    bits = int(min(8, max(1, np.floor(np.log2(max(2, n_train / IVF_TRAIN_PER_LIST))))))
    ivfpq = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, nlist, m, bits, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexRefineFlat(ivfpq)
    index.k_factor = float(refine_factor)
    return index, {"nlist": nlist, "pq_m": m, "pq_bits": bits, "refine_factor": refine_factor}


def _default_pq_m(d: int) -> int:
    """Sub-quantisers for IVF-PQ: one per 4 dimensions (64 bytes a vector at D=256), a divisor of ``d``."""
    return max(m for m in range(1, max(1, d // 4) + 1) if d % m == 0)


#: The search-time knob of each approximate kind and the values tried, in order.
KNOBS = {"hnsw": ("efSearch", EF_SEARCH_GRID), "ivf": ("nprobe", NPROBE_GRID), "ivfpq": ("nprobe", NPROBE_GRID)}


def set_search_params(index, *, kind: str, params: Mapping) -> None:
    """Apply the search-time parameters a manifest records (``efSearch``, ``nprobe``) to ``index``."""
    faiss = _faiss()
    if kind == "hnsw":
        index.hnsw.efSearch = int(params["efSearch"])
    elif kind in ("ivf", "ivfpq"):
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
    if kind == "ivfpq" and "refine_factor" in params:
        index.k_factor = float(params["refine_factor"])


def _recall_sample(vectors: np.ndarray, *, n_queries: int, k: int, seed: int):
    """Query rows drawn with ``seed``, and their true ``k`` nearest other rows (exact search)."""
    n = len(vectors)
    qids = np.sort(np.random.default_rng(seed).choice(n, size=min(n_queries, n), replace=False))
    kk = min(k, n - 1) if n > 1 else 1
    _, truth = _exact_neighbours(vectors, vectors[qids], kk + 1)
    return qids, _drop_self(truth, qids, kk)


def _tune(index, vectors: np.ndarray, *, kind: str, qids: np.ndarray, truth: np.ndarray,
          target_recall: float, limit: int | None) -> tuple[int, dict[str, float]]:
    """The smallest knob value of :data:`KNOBS` reaching ``target_recall`` (else the largest tried), and
    the recall@k measured at each value tried. Values above ``limit`` (IVF: ``nlist``) are not tried."""
    knob, grid = KNOBS[kind]
    grid = [v for v in grid if limit is None or v <= limit] or [grid[0]]
    kk = truth.shape[1]
    curve: dict[str, float] = {}
    for value in grid:
        set_search_params(index, kind=kind, params={knob: value})
        _, found = index.search(vectors[qids], kk + 1)
        curve[str(value)] = round(recall_at_k(_drop_self(found, qids, kk), truth=truth), 4)
        if curve[str(value)] >= target_recall:
            return value, curve
    return grid[-1], curve


def build_faiss(
    vectors: np.ndarray,
    *,
    kind: str = "auto",
    exact_max: int = EXACT_MAX,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ivf_nlist: int | None = None,
    pq_m: int | None = None,
    refine_factor: int = REFINE_FACTOR,
    target_recall: float = 0.95,
    n_queries: int = 1000,
    k: int = 10,
    seed: int = 0,
):
    """A faiss index over unit vectors, with its measured recall.

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, D)], L2-normalised
    kind : "exact" (IndexFlatIP), "hnsw" (IndexHNSWFlat), "ivf" (IndexIVFFlat),
        "ivfpq" (IndexIVFPQ re-ranked with the full vectors) or "auto": exact up
        to ``exact_max``, :data:`AUTO_KIND` above
    hnsw_m, ef_construction : HNSW graph degree and build beam
    ivf_nlist : IVF lists (k-means centroids); default :func:`default_nlist`
    pq_m, refine_factor : IVF-PQ bytes per vector (default D / 4) and candidates
        re-ranked per neighbour asked for
    target_recall : the search knob (HNSW ``efSearch``, IVF ``nprobe``) is the
        smallest of its grid (:data:`KNOBS`) reaching it; when none does, the
        exact index is returned (``fallback`` says why)
    n_queries : collection vectors used as queries to measure recall@k
    seed : picks the query sample and the k-means training sample

    Returns
    -------
    (faiss.Index, dict)
        The dict holds ``kind``, ``params`` (build and search parameters),
        ``recall_at_10``, ``recall_curve`` (knob value -> recall) and ``build_seconds``.
    """
    if kind not in VALID_KINDS:
        raise SearchIndexError(f"index kind {kind!r} is not one of {VALID_KINDS}")
    n, d = vectors.shape
    if n == 0:
        raise SearchIndexError("no vectors to index")
    if kind == "auto":
        kind = "exact" if n <= exact_max else AUTO_KIND
    t0 = time.perf_counter()
    if kind == "exact":
        return _exact_index(vectors), {"kind": "exact", "params": {}, "recall_at_10": 1.0, "recall_curve": {},
                                       "build_seconds": round(time.perf_counter() - t0, 3)}
    index, params = _make_approximate(vectors, kind=kind, hnsw_m=hnsw_m, ef_construction=ef_construction,
                                      ivf_nlist=ivf_nlist, pq_m=pq_m, refine_factor=refine_factor, seed=seed)
    build_s = time.perf_counter() - t0
    qids, truth = _recall_sample(vectors, n_queries=n_queries, k=k, seed=seed)
    knob = KNOBS[kind][0]
    chosen, curve = _tune(index, vectors, kind=kind, qids=qids, truth=truth, target_recall=target_recall,
                          limit=params.get("nlist"))
    set_search_params(index, kind=kind, params={**params, knob: chosen})
    info = {"kind": kind, "params": {**params, knob: chosen}, "recall_at_10": curve[str(chosen)],
            "recall_curve": curve, "recall_queries": int(len(qids)), "build_seconds": round(build_s, 3),
            "tune_seconds": round(time.perf_counter() - t0 - build_s, 3)}
    if curve[str(chosen)] < target_recall:
        # Better slow than wrong: keep exact search, and the evidence of why.
        log.warning("%s recall@%d %.3f is below the target %.2f even at %s=%d; using exact search",
                    kind, truth.shape[1], curve[str(chosen)], target_recall, knob, chosen)
        why = f"{kind} {info['params']} reached recall@10 {curve[str(chosen)]} < {target_recall}"
        return _exact_index(vectors), {**info, "kind": "exact", "params": {}, "recall_at_10": 1.0, "fallback": why}
    return index, info


def _exact_index(vectors: np.ndarray):
    faiss = _faiss()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


@dataclasses.dataclass(frozen=True)
class Query:
    """What a ``--query`` string named (see :meth:`SearchIndex.resolve`).

    Attributes
    ----------
    text : the string as given
    how : "track id", "audio file" or "path fragment"
    track_id : the indexed track it is, or None (a file that is not indexed)
    path : the audio file to embed, or None (an indexed track's stored vector is used)
    """

    text: str
    how: str
    track_id: str | None
    path: Path | None = None


class SearchIndex:
    """A built index: one faiss sub-index per concept over one track table.

    Load with :meth:`load`; build with :func:`~musicrep.inference.index_build.build_index`
    or :func:`~musicrep.inference.index_build.build_from_runs`.
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
            tracks = _own_file(manifest.get("tracks", TRACKS))
            with open(path / tracks, encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and "track_id" not in rows[0]:
                raise ValueError("no track_id column")
            concepts = {c: (meta, path / _own_file(meta["file"])) for c, meta in manifest["concepts"].items()}
            if manifest.get("default_concept") not in concepts:
                raise KeyError("default_concept")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # also UnicodeDecodeError
            raise SearchIndexError(f"{path}: damaged index ({type(exc).__name__}: {exc}); "
                                   "run `musicrep index build --overwrite` again") from None
        if manifest.get("n_tracks", len(rows)) != len(rows):
            raise SearchIndexError(f"{mpath}: n_tracks is {manifest.get('n_tracks')!r} but {tracks} has "
                                   f"{len(rows)} rows; the index is damaged: rebuild it with --overwrite")
        indexes = {}
        for concept, (meta, fpath) in concepts.items():
            try:
                index = faiss.read_index(str(fpath))
            except RuntimeError as exc:
                raise SearchIndexError(f"{fpath}: cannot read the faiss index ({str(exc).splitlines()[0]})") from None
            if index.ntotal != len(rows):
                raise SearchIndexError(f"{fpath}: holds {index.ntotal} vectors but {tracks} has {len(rows)} rows; rebuild")
            _check_concept(faiss, index, meta, where=f"{mpath} (concept {concept!r}, file {fpath.name})")
            set_search_params(index, kind=meta["kind"], params=meta["params"])
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

    def all_vectors(self, *, by: str | None = None) -> np.ndarray:
        """Every stored unit vector of the ``by`` space, row order. [n, D] float32."""
        index = self._indexes[self._concept(by)]
        return index.reconstruct_n(0, index.ntotal)

    def search(self, queries: np.ndarray, *, k: int = 10, by: str | None = None,
               exclude: Sequence[str | None] | None = None,
               keep: Callable[[dict], bool] | None = None) -> list[list[Hit]]:
        """Nearest tracks by cosine similarity.

        Parameters
        ----------
        queries : np.ndarray [shape=(D,) or (Q, D)], normalised here
        k : neighbours per query
        by : concept sub-index ("artist", "album", "track", "joint"); default see module doc
        exclude : per query, a track id to leave out (the query itself)
        keep : a hit's row -> whether it may be answered; the search reaches
            further until ``k`` hits pass or the index is exhausted

        Returns
        -------
        list (Q) of lists of :class:`Hit`, most similar first
        """
        concept = self._concept(by)
        q = normalize(queries)
        index = self._indexes[concept]
        if q.shape[1] != index.d:
            raise SearchIndexError(f"{self.path}: query has {q.shape[1]} dimensions, the {concept} index {index.d}")
        fetch = min(k + (1 if exclude is not None else 0) + (3 * k if keep is not None else 0), len(self))
        sims, ids = index.search(q, fetch)
        out = []
        for qi in range(len(q)):
            skip = exclude[qi] if exclude is not None else None
            hits = self._hits(sims[qi], ids[qi], k=k, skip=skip, keep=keep)
            reach = fetch
            while keep is not None and len(hits) < k and reach < len(self):  # filtered out too many: look further
                reach = min(len(self), 4 * reach)
                more_sims, more_ids = _search_wider(index, q[qi : qi + 1], k=reach, widen=reach / fetch,
                                                    kind=self.manifest["concepts"][concept]["kind"])
                hits = self._hits(more_sims[0], more_ids[0], k=k, skip=skip, keep=keep)
            out.append(hits)
        return out

    def _hits(self, sims, ids, *, k: int, skip: str | None, keep) -> list[Hit]:
        hits = []
        for sim, i in zip(sims, ids):
            if i < 0 or self.track_ids[i] == skip or (keep is not None and not keep(self.rows[i])):
                continue
            hits.append(Hit(rank=len(hits) + 1, track_id=self.track_ids[i], similarity=float(sim), row=self.rows[i]))
            if len(hits) == k:
                break
        return hits

    def search_track(self, track_id: str, *, k: int = 10, by: str | None = None) -> list[Hit]:
        """Neighbours of an indexed track (itself excluded)."""
        return self.search(self.vector(track_id, by=by), k=k, by=by, exclude=[track_id])[0]

    def model(self, by: str | None = None):
        """The :class:`~musicrep.inference.embed.EmbeddingModel` of a concept, loaded once.

        Raises :class:`SearchIndexError` when the recorded checkpoint is gone or
        no longer has the SHA-256 recorded at build time: its vectors would not
        be comparable with the indexed ones.
        """
        from .embed import load

        concept = self._concept(by)
        if concept in self._models:
            return self._models[concept]
        meta = self.manifest["concepts"][concept]
        ckpt = meta.get("checkpoint")
        if meta.get("shipped"):
            model = load(None)
            was = f"the shipped model {meta['shipped']}"
        elif ckpt:
            # an index built from an unfinished run (said so in its manifest) queries with that run
            model = load(ckpt, allow_unfinished=bool(meta.get("unfinished")))
            was = ckpt
        else:
            raise SearchIndexError(f"{self.path}: the {concept} sub-index records no checkpoint to embed new audio")
        sha = meta.get("checkpoint_sha256")
        if sha and model.checkpoint_sha() != sha:
            raise SearchIndexError(
                f"{self.path}: the {concept} sub-index was built with {was} (sha256 {sha[:12]}), which is now "
                f"{model.checkpoint} with sha256 {model.checkpoint_sha()[:12]}: new vectors would not be comparable "
                "with the indexed ones; rebuild the index (`musicrep index build --overwrite`)")
        self._models[concept] = model
        return model

    def _indexed_path(self, path: str | Path) -> str | None:
        """The id of the indexed track whose audio is ``path`` (resolved), or None."""
        from .embed_job import key_of

        if self._by_path is None:
            self._by_path = {key_of(r["path"]): r["track_id"] for r in self.rows if r.get("path")}
        return self._by_path.get(key_of(path))

    def search_file(self, path: str | Path, *, k: int = 10, by: str | None = None) -> list[Hit]:
        """Neighbours of an audio file, embedded with the run of the concept asked for.

        When the file itself is indexed (same resolved path), it is left out.
        """
        vector = self.model(by).embed_file(path).vector
        return self.search(vector, k=k, by=by, exclude=[self._indexed_path(path)])[0]

    def resolve(self, query: str) -> Query:
        """What ``query`` names: an indexed track id, an audio file, or one indexed path containing it.

        Raises :class:`SearchIndexError` when it names none, or when a path
        fragment matches several tracks (the message lists some of them).
        """
        if query in self._row_of:
            return Query(query, "track id", query)
        if Path(query).is_file():
            return Query(query, "audio file", self._indexed_path(query), Path(query))
        matches = self.match_path(query)
        if len(matches) == 1:
            return Query(query, "path fragment", matches[0])
        if matches:
            shown = "; ".join(f"{t} ({self.rows[self._row_of[t]]['path']})" for t in matches[:SHOW_CANDIDATES])
            more = f" and {len(matches) - SHOW_CANDIDATES} more" if len(matches) > SHOW_CANDIDATES else ""
            raise SearchIndexError(f"{query!r} is part of {len(matches)} indexed paths: {shown}{more}; give more "
                                   "of the path, or a track id")
        raise SearchIndexError(f"{query!r} is neither a track id in {self.path}, an audio file, nor part of an "
                               "indexed path")

    def match_path(self, fragment: str) -> list[str]:
        """Ids of the tracks whose path contains ``fragment`` (ignoring case); an exact path wins alone."""
        if not fragment:
            return []
        exact = [r["track_id"] for r in self.rows if r.get("path") == fragment]
        if exact:
            return exact
        needle = fragment.casefold()
        return [r["track_id"] for r in self.rows if needle in (r.get("path") or "").casefold()]

    def query(self, query: str, *, k: int = 10, by: str | None = None,
              exclude_same: str | None = None) -> list[Hit]:
        """Neighbours of what ``query`` names (:meth:`resolve`), itself left out.

        Parameters
        ----------
        query : an indexed track id, an audio file, or a fragment of one indexed path
        k : neighbours
        by : concept sub-index
        exclude_same : "artist" or "album": leave out hits of the query's artist
            (or album: same artist and album name); needs the query's row in the index
        """
        q = self.resolve(query)
        keep = self._not_same(q, exclude_same) if exclude_same else None
        if q.path is not None:
            vector = self.model(by).embed_file(q.path).vector
        else:
            vector = self.vector(q.track_id, by=by)
        return self.search(vector, k=k, by=by, exclude=[q.track_id], keep=keep)[0]

    def _not_same(self, q: Query, what: str) -> Callable[[dict], bool]:
        if what not in VALID_EXCLUDE:
            raise SearchIndexError(f"exclude_same={what!r} is not one of {VALID_EXCLUDE}")
        if q.track_id is None:
            raise SearchIndexError(
                f"--exclude-same {what}: {q.text} is not an indexed track (no row of {self.path} has its path), so "
                f"its {what} is unknown; query by an indexed track id or path, add the file with `musicrep index "
                "add`, or leave out --exclude-same")
        row = self.rows[self._row_of[q.track_id]]
        if not row.get(what):
            raise SearchIndexError(f"--exclude-same {what}: track {q.track_id!r} has no {what} in {self.path}; "
                                   f"give the catalog an {what} column, or leave out --exclude-same")
        mine = _same_key(row, what)
        return lambda r: _same_key(r, what) != mine


def _search_wider(index, queries: np.ndarray, *, k: int, widen: float, kind: str):
    """``index.search(queries, k)``, an IVF index looking in ``widen`` times as many lists as it is set to.

    An IVF index answers only from the ``nprobe`` lists nearest the query,
    however large ``k``: when a filter rejects what those lists hold (one
    prolific artist can fill them), only more lists find more. HNSW widens its
    beam to ``k`` by itself, and exact search sees everything.
    """
    if kind not in ("ivf", "ivfpq"):
        return index.search(queries, k)
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(index)
    probe = faiss.SearchParametersIVF(nprobe=int(min(ivf.nlist, np.ceil(ivf.nprobe * widen))))
    if kind == "ivfpq":
        refined = faiss.IndexRefineSearchParameters(k_factor=index.k_factor, base_index_params=probe)
        return index.search(queries, k, params=refined)
    return index.search(queries, k, params=probe)


def _same_key(row: Mapping, what: str) -> tuple[str, ...]:
    # Two albums of one name by two artists ("Greatest Hits") are not the same album.
    return (row.get("artist", ""),) if what == "artist" else (row.get("artist", ""), row.get("album", ""))


def _own_file(name) -> str:
    """A file name from the manifest, refused when it would lead out of the index folder."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"file name {name!r} is not a plain name inside the index folder")
    return name


def read_skipped(path: str | Path) -> list[dict]:
    """The rows of an index's ``skipped.csv`` ([] when it has none)."""
    try:
        with open(Path(path) / SKIPPED, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


def __getattr__(name: str):
    # Writing indexes is in musicrep.inference.index_build (which imports this module); the
    # names stay reachable here, looked up on first use so there is no import cycle.
    if name in _BUILD_NAMES:
        from . import index_build

        return getattr(index_build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_concept(faiss, index, meta: Mapping, *, where: str) -> None:
    """The manifest's entry for one sub-index agrees with the faiss file it names.

    A manifest saying ``hnsw`` over a flat index (or the reverse) would fail
    deep inside faiss, or search with settings the index does not have.
    """
    kind = meta.get("kind")
    if kind not in _KIND_CLASSES:
        raise SearchIndexError(f"{where}: kind {kind!r} is not one of {tuple(_KIND_CLASSES)}; "
                               "rebuild the index with --overwrite")
    if not _KIND_CLASSES[kind](faiss, index):
        raise SearchIndexError(f"{where}: the manifest says kind {kind!r} but the file holds a "
                               f"{type(index).__name__}; the index is damaged: rebuild it with --overwrite")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise SearchIndexError(f"{where}: the file's metric is not inner product; rebuild the index with --overwrite")
    if meta.get("dim") != index.d:
        raise SearchIndexError(f"{where}: the manifest says dim {meta.get('dim')!r} but the file holds "
                               f"{index.d}-dimensional vectors; rebuild the index with --overwrite")
    if kind in KNOBS:
        knob = KNOBS[kind][0]
        params = meta.get("params")
        value = params.get(knob) if isinstance(params, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SearchIndexError(f"{where}: params.{knob} is {value!r}, not a positive integer; "
                                   "rebuild the index with --overwrite")


def _is_ivfpq_refined(faiss, index) -> bool:
    return isinstance(index, faiss.IndexRefine) and isinstance(faiss.downcast_index(index.base_index), faiss.IndexIVFPQ)


#: kind -> whether a faiss index read from disk is of that kind.
_KIND_CLASSES = {
    "exact": lambda faiss, index: isinstance(index, faiss.IndexFlat),
    "hnsw": lambda faiss, index: isinstance(index, faiss.IndexHNSW),
    "ivf": lambda faiss, index: isinstance(index, faiss.IndexIVFFlat),
    "ivfpq": _is_ivfpq_refined,
}
