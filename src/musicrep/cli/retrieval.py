"""``musicrep evaluate retrieval``: same-artist / same-album retrieval on held-out songs.

The verb belongs to the ``evaluate`` group (``cli/evaluate.py`` calls
:func:`add_verbs`); this module adds no top-level command of its own.
"""

from __future__ import annotations

import argparse

from ..evaluation.retrieval_settings import BASELINES, PARTS, K


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    """Add ``retrieval`` to the ``evaluate`` group's verbs."""
    r = verbs.add_parser(
        "retrieval", help="mAP and precision@10 of same-artist / same-album songs among nearest neighbours",
        description="Every held-out song of the artist (album) split is a query against the other held-out songs; "
                    "relevant = same artist (album); cosine similarity of L2-normalised song embeddings. Measures "
                    "each run, the concatenation of the single-concept runs and cheap baselines; intervals are a "
                    "95% bootstrap over queries.")
    r.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="run folders (e.g. artist album track joint)")
    r.add_argument("-o", "--out", required=True, metavar="OUT.json", help="result file (written atomically)")
    r.add_argument("--store", help="feature store the runs trained on (default: the one in the first run's run.json)")
    r.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                   help="split parts whose songs form the pool (default: valid test; both are held out by every concept)")
    r.add_argument("--k", type=int, default=K, help=f"cut-off of precision@k (default {K})")
    r.add_argument("--baselines", nargs="*", default=list(BASELINES), metavar="NAME",
                   help=f"any of {' '.join(BASELINES)} (default: all; give none to skip)")
    r.add_argument("--no-concat", action="store_true", help="leave out the concatenation of the single-concept runs")
    r.add_argument("--seed", type=int, default=0, help="seed of the random encoder and the bootstrap (default 0)")
    r.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of each run")
    r.add_argument("--cache", action="store_true",
                   help="embed the whole store once per run and keep it in RUN/embeddings (default: embed only the "
                        "pool songs and write nothing under the runs)")
    r.add_argument("--allow-overlap", action="store_true",
                   help="measure runs that trained on pool songs (refused otherwise; flagged in the output)")
    r.add_argument("--allow-unfinished", action="store_true",
                   help="measure runs whose training did not finish (no DONE; refused otherwise; flagged in the output)")
    r.set_defaults(func=run_retrieval)


def run_retrieval(args: argparse.Namespace) -> int:
    # deferred: imports torch, which every other command would then wait for
    from ..evaluation.retrieval import retrieval_runs

    result = retrieval_runs(
        args.runs, out=args.out, store=args.store, which=args.which, parts=args.parts, k=args.k,
        baselines=args.baselines, concat=not args.no_concat, seed=args.seed, cache=args.cache,
        allow_overlap=args.allow_overlap, allow_unfinished=args.allow_unfinished,
    )
    print(result.table())
    print(f"written: {args.out}")
    return 0 if result.tasks else 1  # no task could be measured
