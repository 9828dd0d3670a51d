"""Search speed and recall: exact (IndexFlatIP) vs HNSW or IVF, on random unit vectors.

For each collection size N (100k and 1M by default) and dimension 512:
the exact index's queries/s, and for HNSW (built with the same code as
``musicrep index build``, :func:`musicrep.index.build_faiss`'s parameters) the
queries/s and recall@10 against exact search for each ``efSearch``. Queries are
fresh random unit vectors, searched in one batch (faiss parallelises over them).

Uniform random vectors in 512 dimensions are the hardest case for approximate
search: the 10th neighbour is barely closer than a random point, so a graph
must visit a large share of the collection to find it. Real song embeddings
have far lower intrinsic dimension; ``--structured`` adds such a set (points
near a 32-dimensional subspace) for comparison. Above ``--hnsw-max`` vectors
(HNSW takes long to build on 2 cores) an IVF-Flat index is measured instead.

Usage::

    python benchmarks/bench_search.py                       # 100k and 1M
    python benchmarks/bench_search.py --sizes 100000 --queries 500
    python benchmarks/bench_search.py --hnsw-max 100000     # IVF at 1M
    python benchmarks/bench_search.py --sizes 1000000 --hnsw-max 100000 --merge

Writes ``benchmarks/results/search.json``; the last line gives the 1M figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

logging.getLogger("faiss.loader").setLevel(logging.WARNING)
import faiss  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from musicrep.index import normalize, recall_at_k  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "search.json"


def unit_vectors(n: int, dim: int, rng: np.random.Generator, *, structured: bool = False, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    basis = rng.standard_normal((32, dim)).astype(np.float32) if structured else None
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        if structured:
            x = rng.standard_normal((m, 32)).astype(np.float32) @ basis + 0.1 * rng.standard_normal((m, dim)).astype(np.float32)
        else:
            x = rng.standard_normal((m, dim)).astype(np.float32)
        out[i : i + m] = normalize(x)
    return out


def timed_search(index, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    _, ids = index.search(queries, k)
    return len(queries) / (time.perf_counter() - t0), ids


def bench_ivf(data, queries, truth, *, k: int, nlist: int, nprobes: list[int], seed: int) -> dict:
    """IVF-Flat (inner product): k-means coarse quantiser trained on a sample, nprobe swept."""
    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(data.shape[1])
    ivf = faiss.IndexIVFFlat(quantizer, data.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(seed).choice(len(data), size=min(len(data), 40 * nlist), replace=False)
    ivf.train(data[np.sort(sample)])
    ivf.add(data)
    build = time.perf_counter() - t0
    print(f"  IVF-Flat nlist={nlist}: built in {build:.0f} s", flush=True)
    rows = []
    for nprobe in nprobes:
        ivf.nprobe = nprobe
        qps, found = timed_search(ivf, queries, k)
        rec = recall_at_k(found, truth)
        rows.append({"nprobe": nprobe, "qps": round(qps, 1), "recall_at_10": round(rec, 4)})
        print(f"  nprobe={nprobe:>5}: {qps:8.0f} q/s  recall@10 {rec:.3f}", flush=True)
    ok = [r for r in rows if r["recall_at_10"] >= 0.95]
    best = max(ok, key=lambda r: r["qps"]) if ok else max(rows, key=lambda r: r["recall_at_10"])
    return {"ivf": {"nlist": nlist, "build_seconds": round(build, 1), "sweep": rows},
            "best": {"method": "ivf", **best}, "best_meets_recall_0_95": bool(ok)}


def bench_one(n: int, *, dim: int, n_queries: int, k: int, m: int, ef_construction: int, efs: list[int],
              structured: bool, seed: int, hnsw_max: int, ivf_nlist: int, nprobes: list[int]) -> dict:
    rng = np.random.default_rng(seed)
    data = unit_vectors(n, dim, rng, structured=structured)
    queries = unit_vectors(n_queries, dim, rng, structured=structured)
    # with structure, queries come from the same distribution as the data
    exact = faiss.IndexFlatIP(dim)
    exact.add(data)
    exact_qps, truth = timed_search(exact, queries, k)
    print(f"N={n:>9,} {'structured' if structured else 'random'}: exact {exact_qps:8.0f} q/s", flush=True)
    result = {"n": n, "dim": dim, "data": "structured" if structured else "random", "queries": n_queries,
              "exact_qps": round(exact_qps, 1)}
    if n > hnsw_max:
        print(f"  HNSW not built (N > --hnsw-max {hnsw_max}); IVF-Flat instead", flush=True)
        return {**result, "hnsw": None, **bench_ivf(data, queries, truth, k=k, nlist=ivf_nlist, nprobes=nprobes,
                                                    seed=seed)}
    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    hnsw.add(data)
    build = time.perf_counter() - t0
    print(f"  HNSW M={m} efConstruction={ef_construction}: built in {build:.0f} s", flush=True)
    rows = []
    for ef in efs:
        hnsw.hnsw.efSearch = ef
        qps, found = timed_search(hnsw, queries, k)
        rec = recall_at_k(found, truth)
        rows.append({"efSearch": ef, "qps": round(qps, 1), "recall_at_10": round(rec, 4)})
        print(f"  efSearch={ef:>5}: {qps:8.0f} q/s  recall@10 {rec:.3f}", flush=True)
    ok = [r for r in rows if r["recall_at_10"] >= 0.95]
    best = max(ok, key=lambda r: r["qps"]) if ok else max(rows, key=lambda r: r["recall_at_10"])
    best = {"method": "hnsw", **best}
    return {**result, "hnsw": {"M": m, "efConstruction": ef_construction,
            "build_seconds": round(build, 1), "sweep": rows}, "best": best, "best_meets_recall_0_95": bool(ok)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--m", type=int, default=32, help="HNSW graph degree")
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--ef", type=int, nargs="+", default=[64, 256, 1024, 2048])
    p.add_argument("--structured", action="store_true", help="also run on structured (low intrinsic dimension) data")
    p.add_argument("--hnsw-max", type=int, default=200_000, help="build HNSW only up to this size (at 1M it takes over an hour on 2 cores); IVF above")
    p.add_argument("--ivf-nlist", type=int, default=1024, help="IVF lists for sizes above --hnsw-max")
    p.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--merge", action="store_true", help="keep the out file's entries for sizes not run now")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    results = []
    for n in args.sizes:
        for structured in ([False, True] if args.structured else [False]):
            results.append(bench_one(n, dim=args.dim, n_queries=args.queries, k=10, m=args.m,
                                     ef_construction=args.ef_construction, efs=args.ef, structured=structured,
                                     seed=args.seed, hnsw_max=args.hnsw_max, ivf_nlist=args.ivf_nlist,
                                     nprobes=args.nprobe))
    load = os.getloadavg()[0]
    for r in results:
        r["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        r["load_average_1min"] = round(load, 2)
    if args.merge and args.out.is_file():  # keep earlier entries for the (n, data) not rerun now
        ran = {(r["n"], r["data"]) for r in results}
        old = [r for r in json.loads(args.out.read_text())["results"] if (r["n"], r["data"]) not in ran]
        results = sorted(old + results, key=lambda r: (r["n"], r["data"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "results": results, "threads": faiss.omp_get_max_threads(), "cpu": platform.processor() or platform.machine(),
        "load_average_1min": round(load, 2), "faiss": faiss.__version__,
        "note": "2 shared cores; other jobs were running (see load_average_1min)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n")
    last = [r for r in results if r["data"] == "random"][-1]
    b = last["best"]
    knob = f"efSearch={b['efSearch']}" if b["method"] == "hnsw" else f"nprobe={b['nprobe']}"
    ann = f"{b['method'].upper()} {knob} {b['qps']:.0f} q/s at recall@10 {b['recall_at_10']:.3f}"
    print(f"search (N={last['n']:,}, d={last['dim']}, random): exact {last['exact_qps']:.0f} q/s at recall@10 1.000; "
          f"{ann} (load {load:.1f} on {faiss.omp_get_max_threads()} threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
