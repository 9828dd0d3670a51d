"""Search at catalogue scale: exact vs HNSW, IVF-Flat and IVF-PQ on realistic vectors.

Uniform random vectors have no neighbourhoods, so no approximate index reaches
high recall on them; song embeddings are clustered. The default ("realistic")
mode measures four sets of L2-normalised 256-d vectors:

songs
    the song embeddings (mean over 3-s segments) of the built-in corpus (the
    feature stores ``games`` and ``folk``: 2,412 songs) by the model shipped in
    the package (:func:`musicrep.inference.pretrained.shipped_model`).
segments
    the same model's 3-s segment embeddings of those songs (52,100 vectors).
mixture-52k, mixture-1M
    draws from a Gaussian mixture fitted to the (normalised) segment embeddings:
    PCA to the first ``--pca-dims`` 64 coordinates (98% of the variance; 95% needs
    20, 99% 86); faiss k-means with ``--components`` K = 128 centroids there;
    each component takes its cluster's share of the vectors, its mean and its
    full covariance (+ 1e-5 I), i.e. the mixture is fitted by one hard-assignment
    (classification) EM step from the k-means partition; the other 192 PCA
    coordinates are independent Gaussians with their own variance. Draws are
    mapped back to 256-d and L2-normalised, as the index does. K and the 64
    dimensions were chosen by the mean log-likelihood (256-d) of the segments of
    a held-out fifth of the songs: p=32: K=16 884.9, 64 893.7, 128 897.1, 256
    898.0; p=64: K=16 906.6, 64 921.3, 128 926.1 (best), 256 924.6, 512 915.3;
    one Gaussian (K=1, p=64) 857.0 (``mixture.heldout_loglik`` in the results,
    measured again each run). The 52k draw has the size of the
    real segment set: on it one sees whether the mixture is harder or easier for
    an index than the real vectors it was fitted to.

For each set: the exact index (``IndexFlatIP``), then each approximate kind
built by :func:`musicrep.inference.faiss_index.build_faiss`, exactly as ``musicrep index build
--kind KIND`` builds it, search knob (``efSearch``, ``nprobe``) tuned there to
recall@10 0.95 on 1,000 of the collection's vectors. Reported: build seconds
(and tuning seconds), then queries/s and recall@10 against exact search for the
knob values around the tuned one, on ``--queries`` other vectors of the
collection (each query's own row left out of both answers), searched in one
batch on ``--threads`` faiss threads. Queries/s is the best of ``--repeats``
runs (the machine is shared) and is printed as a ratio to the exact index
measured in the same run. The operating point of a kind is its fastest knob
value reaching recall@10 >= 0.95 on those queries.

Usage::

    python benchmarks/bench_search.py                                  # realistic, 1M (about 20 min on 2 cores)
    python benchmarks/bench_search.py --stores S1 S2 --size 200000 --kinds ivf ivfpq   # other stores, quicker
    python benchmarks/bench_search.py --random --sizes 100000 1000000 --kinds ivf   # uniform random 512-d vectors

HNSW on 1M random 512-d vectors takes over an hour to build on 2 cores; leave it
out of ``--random`` runs at that size.

Real embeddings are computed once (a few minutes) and cached under
``work/cache/bench_search/`` (git-ignored), keyed by the model's SHA-256 and
the stores' content; a run without the cache recomputes them. Writes
``benchmarks/results/search.json``: ``realistic`` (this mode) and ``random``
(the uniform random-vector figures, kept from the last ``--random`` run; until
one is made, those of the earlier benchmark, in its own layout).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from musicrep.inference.faiss_index import (
    KNOBS,
    build_faiss,
    normalize,
    recall_at_k,
    set_search_params,
)  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "search.json"
CACHE = ROOT / "work" / "cache" / "bench_search"
STORES = (ROOT / "work" / "stores" / "games", ROOT / "work" / "stores" / "folk")
APPROXIMATE = ("hnsw", "ivf", "ivfpq")
TARGET = 0.95
K = 10


# ------------------------------------------------------------------ real vectors
def real_embeddings(stores, *, cache: Path) -> dict[str, np.ndarray]:
    """Song and segment embeddings of the stores' tracks by the shipped model, cached.

    Returns
    -------
    dict with ``songs`` [n_songs, D], ``segments`` [n_segments, D] (float32, not
    normalised) and ``owner`` [n_segments] (each segment's row in ``songs``)
    """
    from musicrep.inference.embed import load
    from musicrep.inference.store_embeddings import store_id
    from musicrep.data.store import open_store

    model = load(None)
    opened = [open_store(s) for s in stores]
    key = hashlib.sha256((model.checkpoint_sha() + "".join(store_id(s) for s in opened)).encode()).hexdigest()[:16]
    path = cache / f"real-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {name: z[name] for name in ("songs", "segments", "owner")}
    print(f"embedding {sum(len(s) for s in opened)} songs of {', '.join(str(s.path) for s in opened)} "
          f"(once; cached in {path})", flush=True)
    songs, segments, owner = [], [], []
    for store in opened:
        for tid in store.track_ids:
            e = model.embed_frames(store.frames(tid), segments=True, source=f"{store.path}: {tid}")
            owner += [len(songs)] * len(e.segments)
            songs.append(e.vector)
            segments.append(e.segments)
    out = {"songs": np.stack(songs), "segments": np.concatenate(segments), "owner": np.asarray(owner)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)  # a killed run leaves no half-written cache under the real name
    return out


# ------------------------------------------------------------- Gaussian mixture
@dataclasses.dataclass(frozen=True)
class Mixture:
    """A Gaussian mixture in PCA coordinates, with independent Gaussian residual coordinates.

    Attributes
    ----------
    mean : [D] ; basis : [D, D] PCA directions (rows), by falling variance
    weights : [K] ; means : [K, p] ; chols : [K, p, p] lower Cholesky factors of the covariances
    residual_std : [D - p] standard deviation of PCA coordinates p..D
    """

    mean: np.ndarray
    basis: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    chols: np.ndarray
    residual_std: np.ndarray


def fit_mixture(x: np.ndarray, *, components: int, dims: int, seed: int, reg: float = 1e-5) -> Mixture:
    """Fit :class:`Mixture` to unit vectors ``x`` [n, D] (see the module docstring for how)."""
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    _, s, basis = np.linalg.svd(x - mean, full_matrices=False)
    z = (x - mean) @ basis[:dims].T
    km = faiss.Kmeans(dims, components, niter=20, seed=seed)
    km.train(z.astype(np.float32))
    _, label = km.index.search(z.astype(np.float32), 1)
    weights, means, chols = [], [], []
    for c in range(components):
        zc = z[label[:, 0] == c]
        if len(zc) < 2:  # an (almost) empty cluster has no covariance; its few points go unmodelled
            continue
        weights.append(len(zc))
        means.append(zc.mean(axis=0))
        chols.append(np.linalg.cholesky(np.cov(zc.T, bias=True) + reg * np.eye(dims)))
    return Mixture(mean=mean, basis=basis, weights=np.asarray(weights) / np.sum(weights), means=np.asarray(means),
                   chols=np.asarray(chols), residual_std=s[dims:] / np.sqrt(len(x)))


def sample_mixture(mix: Mixture, n: int, *, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` draws from ``mix``, L2-normalised. [n, D] float32."""
    rng = np.random.default_rng(seed)
    d, p = mix.basis.shape[1], mix.means.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        comp = rng.choice(len(mix.weights), size=m, p=mix.weights)
        e = rng.standard_normal((m, p))
        z = mix.means[comp] + np.einsum("nij,nj->ni", mix.chols[comp], e)
        r = rng.standard_normal((m, d - p)) * mix.residual_std
        out[i : i + m] = normalize(mix.mean + np.hstack([z, r]) @ mix.basis)
    return out


def heldout_loglik(x: np.ndarray, owner: np.ndarray, *, components: int, dims: int, seed: int) -> float:
    """Mean log-likelihood (D-dimensional) of the segments of a held-out fifth of the songs.

    Whole songs are held out: a song's own segments sit close together, and a
    mixture that memorised them would look good on them and nowhere else.
    """
    from scipy.linalg import solve_triangular
    from scipy.special import logsumexp

    songs = np.unique(owner)
    held = np.isin(owner, np.random.default_rng(seed).choice(songs, size=len(songs) // 5, replace=False))
    mix = fit_mixture(x[~held], components=components, dims=dims, seed=seed)
    z = (x[held].astype(np.float64) - mix.mean) @ mix.basis.T
    p = mix.means.shape[1]
    var = mix.residual_std**2
    residual = -0.5 * (np.log(2 * np.pi * var) + z[:, p:] ** 2 / var).sum(axis=1)
    per_comp = np.empty((len(z), len(mix.weights)))
    for c, (w, mu, chol) in enumerate(zip(mix.weights, mix.means, mix.chols)):
        y = solve_triangular(chol, (z[:, :p] - mu).T, lower=True)
        per_comp[:, c] = np.log(w) - np.log(np.diag(chol)).sum() - 0.5 * (p * np.log(2 * np.pi) + (y * y).sum(axis=0))
    return float(np.mean(logsumexp(per_comp, axis=1) + residual))


# ------------------------------------------------------------------ measuring
def timed_search(index, vectors: np.ndarray, qids: np.ndarray, *, repeats: int) -> tuple[float, np.ndarray]:
    """Best queries/s of ``repeats`` batched searches for rows ``qids``, and the ``K`` nearest other rows [Q, K]."""
    queries = vectors[qids]
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, ids = index.search(queries, K + 1)
        best = min(best, time.perf_counter() - t0)
    # each query is a row of the collection: its own row is no answer
    found = np.array([[j for j in row if j != me][:K] for row, me in zip(ids.tolist(), qids)])
    return len(qids) / best, found


def bench_kind(vectors, qids, truth, *, kind: str, settings: dict, exact_qps: float, repeats: int) -> dict:
    """Build ``kind`` with :func:`build_faiss` and sweep its knob around the tuned value."""
    t0 = time.perf_counter()
    index, info = build_faiss(vectors, kind=kind, target_recall=TARGET, **settings.get(kind, {}))
    total = time.perf_counter() - t0
    out = {"build_seconds": info["build_seconds"], "tune_seconds": info.get("tune_seconds"),
           "build_and_tune_seconds": round(total, 1), "params": info["params"],
           "build_recall_curve": info.get("recall_curve")}
    if info["kind"] != kind:  # build_faiss kept exact search
        print(f"  {kind:<6} built in {total:6.1f} s; no knob value reached recall {TARGET}: {info['fallback']}", flush=True)
        return {**out, "fallback": info["fallback"], "operating_point": None}
    knob, grid = KNOBS[kind]
    chosen = info["params"][knob]
    limit = info["params"].get("nlist", np.inf)
    sweep = []
    for value in [v for v in grid if chosen / 4 <= v <= 4 * chosen and v <= limit]:
        set_search_params(index, kind=kind, params={knob: value})
        qps, found = timed_search(index, vectors, qids, repeats=repeats)
        rec = recall_at_k(found, truth=truth)
        sweep.append({knob: value, "qps": round(qps, 1), "recall_at_10": round(rec, 4),
                      "speedup_vs_exact": round(qps / exact_qps, 2)})
    ok = [r for r in sweep if r["recall_at_10"] >= TARGET]
    point = max(ok, key=lambda r: r["qps"]) if ok else None
    shown = f"{knob}={point[knob]} {point['qps']:8.0f} q/s ({point['speedup_vs_exact']:.1f}x exact) recall@10 " \
            f"{point['recall_at_10']:.3f}" if point else f"recall {TARGET} not reached: {sweep}"
    print(f"  {kind:<6} built in {info['build_seconds']:6.1f} s (+{info['tune_seconds']:.1f} s tuning) "
          f"{info['params']}: {shown}", flush=True)
    return {**out, "sweep": sweep, "operating_point": point}


def bench_set(name: str, vectors: np.ndarray, *, kinds, settings: dict, n_queries: int, repeats: int,
              seed: int) -> dict:
    """Exact and each approximate kind on one set of unit vectors."""
    n, d = vectors.shape
    # seed + 1: not the rows build_faiss tunes on (it draws with ``seed``)
    qids = np.sort(np.random.default_rng(seed + 1).choice(n, size=min(n_queries, n), replace=False))
    exact = faiss.IndexFlatIP(d)
    exact.add(vectors)
    exact_qps, truth = timed_search(exact, vectors, qids, repeats=repeats)
    del exact
    print(f"{name} (N={n:,}, d={d}, {len(qids)} queries): exact {exact_qps:8.0f} q/s", flush=True)
    result = {"n": n, "dim": d, "queries": int(len(qids)), "exact_qps": round(exact_qps, 1), "kinds": {}}
    for kind in kinds:
        result["kinds"][kind] = bench_kind(vectors, qids, truth, kind=kind, settings=settings, exact_qps=exact_qps,
                                           repeats=repeats)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)  # other jobs share the 2 cores
    return result


def unit_vectors(n: int, dim: int, *, seed: int, chunk: int = 100_000) -> np.ndarray:
    """Uniform random unit vectors. [n, dim] float32."""
    rng = np.random.default_rng(seed)
    return np.concatenate([normalize(rng.standard_normal((min(chunk, n - i), dim)).astype(np.float32))
                           for i in range(0, n, chunk)])


# --------------------------------------------------------------------- modes
def realistic(args, settings: dict) -> dict:
    real = real_embeddings(args.stores, cache=args.cache)
    songs, segments = normalize(real["songs"]), normalize(real["segments"])
    t0 = time.perf_counter()
    mix = fit_mixture(segments, components=args.components, dims=args.pca_dims, seed=args.seed)
    fit_s = time.perf_counter() - t0
    loglik = {f"K={args.components},p={args.pca_dims}": round(heldout_loglik(
        segments, real["owner"], components=args.components, dims=args.pca_dims, seed=args.seed), 1),
        f"K=1,p={args.pca_dims}": round(heldout_loglik(
            segments, real["owner"], components=1, dims=args.pca_dims, seed=args.seed), 1)}
    print(f"mixture: K={len(mix.weights)} in {args.pca_dims} PCA dims fitted in {fit_s:.1f} s; held-out "
          f"log-likelihood {loglik}", flush=True)
    common = {"kinds": args.kinds, "settings": settings, "n_queries": args.queries, "repeats": args.repeats,
              "seed": args.seed}
    sets = {"songs": bench_set("songs", songs, **common),
            "segments": bench_set("segments", segments, **common),
            # as many draws as real segments: is the mixture as hard for an index as what it was fitted to?
            f"mixture-{_short(len(segments))}": bench_set(f"mixture-{_short(len(segments))}",
                                                          sample_mixture(mix, len(segments), seed=args.seed + 2),
                                                          **common)}
    big = sample_mixture(mix, args.size, seed=args.seed + 3)
    sets[f"mixture-{_short(args.size)}"] = bench_set(f"mixture-{_short(args.size)}", big, **common)
    explained = 1 - float(np.sum(mix.residual_std**2) / np.sum(segments.var(axis=0)))
    return {"sets": sets, "mixture": {
        "fitted_to": f"{len(segments)} segment embeddings of {len(songs)} songs (shipped model, L2-normalised)",
        "pca_dims": args.pca_dims, "pca_variance_explained": round(explained, 4), "components": int(len(mix.weights)),
        "covariance": "full (+1e-5 I) per component in PCA space; residual PCA coordinates independent Gaussians",
        "fit": "faiss k-means (20 iterations), then each cluster's share, mean and covariance "
               "(one hard-assignment EM step)",
        "heldout_loglik": loglik, "heldout": "segments of a random fifth of the songs, mean log-density in 256-d",
        "fit_seconds": round(fit_s, 1)}}


def random_mode(args, settings: dict) -> dict:
    common = {"kinds": args.kinds, "settings": settings, "n_queries": args.queries, "repeats": args.repeats,
              "seed": args.seed}
    return {"sets": {f"random-{_short(n)}": bench_set(f"random-{_short(n)}", unit_vectors(n, 512, seed=args.seed),
                                                      **common) for n in args.sizes}}


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def summary(sets: dict) -> str:
    """One line per set: exact q/s, and each kind's operating point."""
    lines = []
    for name, r in sets.items():
        parts = [f"exact {r['exact_qps']:.0f} q/s"]
        for kind, k in r["kinds"].items():
            p = k.get("operating_point")
            knob = KNOBS[kind][0]
            parts.append(f"{kind} {p['qps']:.0f} q/s ({p['speedup_vs_exact']:.1f}x) recall {p['recall_at_10']:.3f} "
                         f"{knob}={p[knob]} build {k['build_seconds']:.0f} s" if p else f"{kind}: recall {TARGET} not reached")
        lines.append(f"{name} (N={r['n']:,}): " + "; ".join(parts))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--random", action="store_true", help="uniform random 512-d unit vectors instead (--sizes)")
    p.add_argument("--stores", type=Path, nargs="+", default=list(STORES), help="feature stores of the corpus")
    p.add_argument("--size", type=int, default=1_000_000, help="vectors drawn from the mixture (default 1M)")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="with --random")
    p.add_argument("--components", type=int, default=128, help="mixture components K (default 128)")
    p.add_argument("--pca-dims", type=int, default=64, help="PCA coordinates the mixture models jointly (default 64)")
    p.add_argument("--kinds", nargs="+", choices=APPROXIMATE, default=list(APPROXIMATE))
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=200, help="HNSW build beam (build_faiss's default 200)")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per point; the best counts")
    p.add_argument("--threads", type=int, default=2, help="faiss threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=CACHE, help="where the real embeddings are cached")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    settings = {"hnsw": {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction}}
    mode = "random" if args.random else "realistic"
    t0 = time.perf_counter()
    result = random_mode(args, settings) if args.random else realistic(args, settings)
    load = os.getloadavg()
    result.update({"command": "python benchmarks/bench_search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "threads": args.threads, "cpu_cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                   "faiss": faiss.__version__, "load_average_1_5_15min": [round(x, 2) for x in load],
                   "seconds": round(time.perf_counter() - t0, 1), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "note": "queries/s: best of --repeats batched runs; recall@10 against exact search, "
                           "each query's own row left out"})
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    old = old if "realistic" in old or "random" in old else {"random": old}  # the file before realistic mode
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**old, mode: result}, indent=2) + "\n")
    print(summary(result["sets"]))
    print(f"(load average {load[0]:.1f} on {os.cpu_count()} cores, {args.threads} faiss threads; {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
