"""faiss indexes over unit vectors: the kinds, building them with measured recall, searching wider.

Vectors are L2-normalised song embeddings, so faiss's inner product is the cosine
similarity the models were trained with. ``exact`` is ``IndexFlatIP``; the
approximate kinds are ``hnsw`` (an HNSW graph), ``ivf`` (IVF-Flat) and ``ivfpq``
(IVF-PQ re-ranked with the full vectors). :func:`build_faiss` measures an
approximate index's recall@10 against exact search on a sample of the collection's
own vectors, raises its search knob (HNSW ``efSearch``, IVF ``nprobe``) until the
target is met, and keeps the exact index when no value meets it. The index folder
that holds these indexes is :mod:`musicrep.inference.index`.

faiss is imported on first use (:func:`import_faiss`): it is slow to import and
optional for everything but search, so importing this module costs nothing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from ..errors import SearchIndexError

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

VALID_KINDS = ("auto", "exact", "hnsw", "ivf", "ivfpq")
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


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). [n, D] -> float32 [n, D]."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    v = v.reshape(1, -1) if v.ndim == 1 else v
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


def import_faiss():
    """faiss, imported quietly (its loader logs each CPU variant it tries at INFO)."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss  # deferred: faiss is slow to import and only building and searching need it

    return faiss


def _exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return exact_index(vectors).search(queries, k)


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
                      ivf_nlist: int | None, pq_m: int | None, refine_factor: int,
                      seed: int) -> tuple[faiss.Index, dict]:
    """The untuned faiss index of an approximate ``kind``, holding ``vectors``, and its build parameters."""
    faiss = import_faiss()
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


def _ivfpq(d: int, *, nlist: int, pq_m: int | None, refine_factor: int, n_train: int) -> tuple[faiss.Index, dict]:
    """An untrained IVF-PQ index inside a re-ranking ``IndexRefineFlat``, and its parameters.

    PQ distances alone rank the 10 nearest too roughly for 0.95 recall; the
    refine step re-scores ``refine_factor * k`` candidates with the full vectors
    (kept beside the codes, which also keeps ``index add`` and ``vector()`` exact).
    """
    faiss = import_faiss()
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


def set_search_params(index: faiss.Index, *, kind: str, params: Mapping) -> None:
    """Apply the search-time parameters a manifest records (``efSearch``, ``nprobe``) to ``index``."""
    faiss = import_faiss()
    if kind == "hnsw":
        index.hnsw.efSearch = int(params["efSearch"])
    elif kind in ("ivf", "ivfpq"):
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
    if kind == "ivfpq" and "refine_factor" in params:
        index.k_factor = float(params["refine_factor"])


def _recall_sample(vectors: np.ndarray, *, n_queries: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Query rows drawn with ``seed``, and their true ``k`` nearest other rows (exact search)."""
    n = len(vectors)
    qids = np.sort(np.random.default_rng(seed).choice(n, size=min(n_queries, n), replace=False))
    kk = min(k, n - 1) if n > 1 else 1
    _, truth = _exact_neighbours(vectors, vectors[qids], kk + 1)
    return qids, _drop_self(truth, qids, kk)


def _tune(index: faiss.Index, vectors: np.ndarray, *, kind: str, qids: np.ndarray, truth: np.ndarray,
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
) -> tuple[faiss.Index, dict]:
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
        return exact_index(vectors), {"kind": "exact", "params": {}, "recall_at_10": 1.0, "recall_curve": {},
                                       "build_seconds": round(time.perf_counter() - t0, 3)}
    index, params = _make_approximate(vectors, kind=kind, hnsw_m=hnsw_m, ef_construction=ef_construction,
                                      ivf_nlist=ivf_nlist, pq_m=pq_m, refine_factor=refine_factor, seed=seed)
    build_s = time.perf_counter() - t0
    return _tuned(index, vectors, kind=kind, params=params, target_recall=target_recall, n_queries=n_queries, k=k,
                  seed=seed, started=t0, build_s=build_s)


def _tuned(index: faiss.Index, vectors: np.ndarray, *, kind: str, params: dict, target_recall: float,
           n_queries: int, k: int, seed: int, started: float, build_s: float) -> tuple[faiss.Index, dict]:
    """An approximate index with its knob set to the tuned value and its build info, or the exact
    index when no value of the knob reaches ``target_recall`` (as :func:`build_faiss` returns).

    ``started``: ``time.perf_counter()`` when the build began; ``build_s``: seconds it took.
    """
    qids, truth = _recall_sample(vectors, n_queries=n_queries, k=k, seed=seed)
    knob = KNOBS[kind][0]
    chosen, curve = _tune(index, vectors, kind=kind, qids=qids, truth=truth, target_recall=target_recall,
                          limit=params.get("nlist"))
    set_search_params(index, kind=kind, params={**params, knob: chosen})
    info = {"kind": kind, "params": {**params, knob: chosen}, "recall_at_10": curve[str(chosen)],
            "recall_curve": curve, "recall_queries": int(len(qids)), "build_seconds": round(build_s, 3),
            "tune_seconds": round(time.perf_counter() - started - build_s, 3)}
    if curve[str(chosen)] < target_recall:
        # Better slow than wrong: keep exact search, and the evidence of why.
        log.warning("%s recall@%d %.3f is below the target %.2f even at %s=%d; using exact search",
                    kind, truth.shape[1], curve[str(chosen)], target_recall, knob, chosen)
        why = f"{kind} {info['params']} reached recall@10 {curve[str(chosen)]} < {target_recall}"
        return exact_index(vectors), {**info, "kind": "exact", "params": {}, "recall_at_10": 1.0, "fallback": why}
    return index, info


def exact_index(vectors: np.ndarray) -> faiss.Index:
    """An exact inner-product index (``IndexFlatIP``) holding ``vectors`` [n, D]."""
    faiss = import_faiss()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def read_faiss(path: Path) -> faiss.Index:
    """The faiss index in ``path``; :class:`SearchIndexError` naming it when it cannot be read."""
    faiss = import_faiss()
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise SearchIndexError(f"{path}: cannot read the faiss index ({str(exc).splitlines()[0]})") from None


def write_faiss(index: faiss.Index, *, path: Path) -> None:
    """Write ``index`` to ``path`` (call inside :func:`musicrep.io.atomic_path`)."""
    import_faiss().write_index(index, str(path))


def search_wider(index: faiss.Index, *, queries: np.ndarray, k: int, widen: float,
                 kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``index.search(queries, k)``, an IVF index looking in ``widen`` times as many lists as it is set to.

    An IVF index answers only from the ``nprobe`` lists nearest the query,
    however large ``k``: when a filter rejects what those lists hold (one
    prolific artist can fill them), only more lists find more. HNSW widens its
    beam to ``k`` by itself, and exact search sees everything.
    """
    if kind not in ("ivf", "ivfpq"):
        return index.search(queries, k)
    faiss = import_faiss()
    ivf = faiss.extract_index_ivf(index)
    probe = faiss.SearchParametersIVF(nprobe=int(min(ivf.nlist, np.ceil(ivf.nprobe * widen))))
    if kind == "ivfpq":
        refined = faiss.IndexRefineSearchParameters(k_factor=index.k_factor, base_index_params=probe)
        return index.search(queries, k, params=refined)
    return index.search(queries, k, params=probe)


def check_kind(index: faiss.Index, *, meta: Mapping, where: str) -> None:
    """The manifest's entry for one sub-index agrees with the faiss file it names.

    A manifest saying ``hnsw`` over a flat index (or the reverse) would fail
    deep inside faiss, or search with settings the index does not have.
    """
    faiss = import_faiss()
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
