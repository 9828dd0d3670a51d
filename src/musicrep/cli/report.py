"""``musicrep report RUN... -o REPORT``: the paper's Tables 1-4, results.json and figures.

The result files it computes (hold-out, transfer, maps) go to ``REPORT/results/``; a rerun keeps
those made with the same runs, stores and settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import load_config
from ..errors import ConfigError
from ..locks import folder_lock


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write report.md, results.json and figures for trained runs and sweeps")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run folders (e.g. artist, album, track and joint runs)")
    p.add_argument("-o", "--out", required=True, help="report folder")
    p.add_argument("--store", help="store the runs trained on (default: the one in the first run's run.json)")
    p.add_argument("--transfer", action="append", default=[], metavar="STORE",
                   help="genre-labelled store for Table 2 (repeat for several datasets)")
    p.add_argument("--sweep", action="append", default=[], metavar="SWEEP", help="sweep folder for Tables 3/4 (repeatable)")
    p.add_argument("--trials", type=int, default=1000, help="hold-out trials per concept (default 1000)")
    p.add_argument("--negatives", type=int, default=4, help="hold-out negatives per trial (default 4)")
    p.add_argument("--baselines", nargs="*", default=None, metavar="NAME",
                   help="Table 2 baselines among genres random mfcc logmel (default: all)")
    p.add_argument("--transfer-config", help="YAML file with transfer settings")
    p.add_argument("--transfer-set", action="append", default=[], metavar="KEY=VALUE", help="override one transfer setting")
    p.add_argument("--map-points", type=int, default=1500, help="songs per t-SNE map (0: no maps)")
    p.add_argument("--seed", type=int, default=0, help="seed of the hold-out trials and the maps")
    p.add_argument("--allow-overlap", action="store_true",
                   help="score runs that trained on songs the hold-out trials hold out (refused otherwise)")
    p.add_argument("--allow-unfinished", action="store_true",
                   help="report runs whose training did not finish (no DONE; refused otherwise; noted in the report)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: these import torch, which every other command would then wait for
    from ..evaluation.results import produce_results
    from ..evaluation.transfer import TransferConfig
    from ..report.write import render_results, unfinished_runs

    if not (args.runs or args.sweep):
        raise ConfigError("nothing to report: give run folders and/or --sweep SWEEP")
    results_dir = Path(args.out) / "results"
    with folder_lock(args.out):  # at once, before minutes of hold-out trials
        transfer_files = produce_results(
            args.runs, results_dir=results_dir, store=args.store, transfer_stores=args.transfer,
            n_trials=args.trials, n_negatives=args.negatives, baselines=args.baselines,
            transfer_config=load_config(TransferConfig, path=args.transfer_config, overrides=args.transfer_set),
            map_points=args.map_points, seed=args.seed, allow_overlap=args.allow_overlap,
            allow_unfinished=args.allow_unfinished,
        )
        path = render_results(args.out, results_dir=results_dir, transfer_files=transfer_files,
                              sweep_dirs=args.sweep, runs=args.runs)
    print(path.read_text(encoding="utf-8"))
    print(f"written: {path} (figures in {path.parent / 'figures'}; result files in {results_dir})")
    for run_dir in unfinished_runs(args.runs):
        print(f"WARNING: {run_dir} did not finish training (no DONE); the report says so under its title",
              file=sys.stderr)
    return 0
