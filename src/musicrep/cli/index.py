"""``musicrep index build [--run [CONCEPT=]RUN ...] --catalog C -o INDEX``,
``musicrep index add INDEX --catalog MORE [--store S]`` and
``musicrep search INDEX --query TRACK_ID|FILE|PATH_FRAGMENT [-k 10] [--by CONCEPT] [--exclude-same artist|album] [--json]``."""

from __future__ import annotations

import json
import sys

from ..data.catalog import fit_column
from ..inference.faiss_index import AUTO_KIND, EXACT_MAX, VALID_KINDS
from ..inference.index import VALID_CONCEPTS, VALID_EXCLUDE, SearchIndex


def _print_concepts(index: SearchIndex) -> None:
    m = index.manifest
    for concept in index.concepts:  # in the order given (the manifest's keys are sorted)
        meta = m["concepts"][concept]
        if meta.get("unfinished"):
            print(f"WARNING: the {concept} sub-index comes from {meta.get('run')}, whose training did not finish "
                  "(no DONE)", file=sys.stderr)
        params = " ".join(f"{k}={v}" for k, v in meta["params"].items())
        star = " (default)" if concept == m["default_concept"] else ""
        model = f" model={meta['shipped']} (shipped)" if meta.get("shipped") else ""
        print(f"  {concept}{star}: {meta['kind']} {params} dim={meta['dim']} recall@10={meta['recall_at_10']:.3f}{model}")
        if meta.get("fallback"):
            print(f"    exact search kept: {meta['fallback']}")


def _build(args) -> int:
    # deferred: index_build loads models (torch, slow to import); only this verb needs it
    from ..inference.index_build import build_from_runs, parse_runs

    index = build_from_runs(
        runs=parse_runs(args.run),
        catalog=args.catalog,
        out=args.output,
        store=args.store,
        overwrite=args.overwrite,
        workers=args.workers,
        allow_unfinished=args.allow_unfinished,
        kind=args.kind,
        exact_max=args.exact_max,
        target_recall=args.target_recall,
    )
    # counted from what is in the index, so the line cannot disagree with it
    print(f"{index.path}: {len(index)} tracks indexed, {index.manifest['n_skipped']} skipped (see skipped.csv)")
    _print_concepts(index)
    return 0


def _add(args) -> int:
    # deferred: index_build loads models (torch, slow to import); only this verb needs it
    from ..inference.index_build import add_to_index

    index, added = add_to_index(index=args.index, catalog=args.catalog, store=args.store, workers=args.workers)
    print(f"{index.path}: {added} track(s) added, {len(index)} indexed, {index.manifest['n_skipped']} skipped "
          "(see skipped.csv)")
    _print_concepts(index)
    return 0


def _search(args) -> int:
    index = SearchIndex.load(args.index)
    hits = index.query(args.query, k=args.k, by=args.by, exclude_same=args.exclude_same)
    if args.json:
        print(json.dumps([{"rank": h.rank, "id": h.track_id, "score": round(h.similarity, 6),
                           "path": h.row.get("path", ""), "artist": h.artist, "album": h.album, "title": h.title}
                          for h in hits], ensure_ascii=False, indent=1))
        return 0
    by = args.by or index.default_concept
    print(f"nearest to {args.query} by {by}:")
    print(f"{'rank':>4}  {'sim':>6}  {'artist':<24} {'album':<24} {'title':<28} track_id")
    for h in hits:
        # columns by terminal width, so Hangul or CJK names (two columns each) stay aligned
        print(f"{h.rank:>4}  {h.similarity:6.3f}  {fit_column(h.artist, width=24)} {fit_column(h.album, width=24)} "
              f"{fit_column(h.title, width=28)} {h.track_id}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("index", help="build a similarity-search index over song embeddings")
    verbs = p.add_subparsers(dest="index_verb", metavar="VERB", required=True)
    _add_build_parser(verbs)
    _add_add_parser(verbs)
    _add_search_parser(subparsers)


def _add_build_parser(verbs) -> None:
    b = verbs.add_parser(
        "build",
        help="embed a catalog with one or more runs and index it",
        description="Embed the catalog's songs with each run and build a faiss index per concept. "
        "Give one run, or several as CONCEPT=RUN (artist, album, track, joint) for search --by CONCEPT; "
        "without --run, the model shipped with musicrep is used (as 'joint'). Each audio file is decoded "
        "once for all runs; with --store (or when a run's training store holds the catalog's tracks) "
        "features are read from the store instead.",
    )
    b.add_argument("--run", action="append", metavar="[CONCEPT=]RUN",
                   help="run folder or checkpoint (repeatable; default: the shipped model)")
    b.add_argument("--catalog", required=True, metavar="CSV", help="the songs to index")
    b.add_argument("-o", "--output", required=True, metavar="INDEX", help="index folder to write")
    b.add_argument("--store", metavar="STORE",
                   help="feature store of the catalog (`musicrep prepare CATALOG -o STORE`): read its features "
                   "instead of decoding the audio (much faster)")
    b.add_argument("--kind", choices=VALID_KINDS, default="auto",
                   help=f"auto: exact up to --exact-max tracks, {AUTO_KIND} above; hnsw: HNSW graph; ivf: IVF-Flat; "
                   "ivfpq: IVF-PQ re-ranked with the full vectors (exact: always exact search)")
    b.add_argument("--exact-max", type=int, default=EXACT_MAX, metavar="N", help=f"largest exact index with --kind auto (default {EXACT_MAX})")
    b.add_argument("--target-recall", type=float, default=0.95, metavar="R",
                   help="recall@10 the HNSW efSearch or IVF nprobe is tuned to, measured at build time (default 0.95)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index")
    b.add_argument("--workers", type=int, default=1, metavar="N", help="decoding threads (default 1)")
    b.add_argument("--allow-unfinished", action="store_true",
                   help="index with runs whose training did not finish (no DONE), with a warning")
    b.set_defaults(func=_build)


def _add_add_parser(verbs) -> None:
    a = verbs.add_parser(
        "add",
        help="add a catalog's tracks to a built index",
        description="Embed the new tracks with the models the index records (their checksums checked) and "
        "rebuild its faiss indexes with the settings it was built with; the index is switched to the new files "
        "in one step. Track ids already indexed are refused.",
    )
    a.add_argument("index", metavar="INDEX", help="index folder from `musicrep index build`")
    a.add_argument("--catalog", required=True, metavar="CSV", help="the songs to add")
    a.add_argument("--store", metavar="STORE", help="feature store holding the new songs (instead of decoding)")
    a.add_argument("--workers", type=int, default=1, metavar="N", help="decoding threads (default 1)")
    a.set_defaults(func=_add)


def _add_search_parser(subparsers) -> None:
    s = subparsers.add_parser("search", help="songs most like a file or an indexed track")
    s.add_argument("index", metavar="INDEX", help="index folder from `musicrep index build`")
    s.add_argument("--query", required=True, metavar="QUERY",
                   help="an indexed track id, an audio file, or part of one indexed path (e.g. a file name)")
    s.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
    s.add_argument("--by", choices=VALID_CONCEPTS, help="similarity by artist, album, track or joint (default: joint if indexed, else the first run)")
    s.add_argument("--exclude-same", choices=VALID_EXCLUDE,
                   help="leave out songs of the query's artist (or album); the query must be an indexed track")
    s.add_argument("--json", action="store_true", help="print the hits as JSON (rank, id, score, path, artist, album, title)")
    s.set_defaults(func=_search)
