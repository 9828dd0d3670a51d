"""``musicrep evaluate holdout|transfer|retrieval|tagging``: the paper's Tables 1 and 2, and beyond."""

from __future__ import annotations

import argparse

from ..config import load_config
from ..errors import ConfigError
from ..io import atomic_write_json
from . import retrieval, tagging


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="hold-out prediction (Table 1), genre transfer (Table 2), retrieval and "
                                           "tagging of trained runs")
    verbs = p.add_subparsers(dest="evaluate_command", metavar="WHAT", required=True)

    h = verbs.add_parser("holdout", help="positive/negative prediction on the test songs: models x concepts")
    h.add_argument("runs", nargs="+", metavar="RUN", help="run folders (the first one's split defines the trials)")
    h.add_argument("--store", help="feature store the runs trained on (default: the one in the first run's config)")
    h.add_argument("--trials", type=int, default=1000, help="trials per concept (default 1000)")
    h.add_argument("--negatives", type=int, default=4, help="negatives per trial (default 4: chance 0.2)")
    h.add_argument("--seed", type=int, default=0, help="seed of the trials (default 0)")
    h.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of each run")
    h.add_argument("--allow-overlap", action="store_true",
                   help="score runs that trained on songs the trials hold out (refused otherwise; flagged in the output)")
    h.add_argument("--allow-unfinished", action="store_true",
                   help="score runs whose training did not finish (no DONE; refused otherwise; flagged in the output)")
    h.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    h.set_defaults(func=run_holdout)

    t = verbs.add_parser("transfer", help="linear probe on song embeddings of a genre-labelled collection, with baselines",
                         description="The authors' probe by default (scalar standardisation, softmax layer, SGD lr 0.01 "
                                     "Nesterov, batch 16, early stopping on validation loss, 10 trials); prints mean +- "
                                     "std [95% interval] per method, and a WARNING line for each run that trained on "
                                     "songs of this collection.")
    t.add_argument("--run", action="append", required=True, metavar="RUN", help="run folder (repeat for several)")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="prepared store of the genre-labelled collection")
    src.add_argument("--catalog", help="catalog CSV of the collection (its store is prepared first)")
    t.add_argument("--store-dir", help="where to prepare the --catalog's store (default: beside the catalog)")
    t.add_argument("--baselines", nargs="*", default=None, metavar="NAME",
                   help="any of genres random mfcc logmel (default: all; give none to skip)")
    t.add_argument("--name", help="dataset name for the table (default: the store folder's name)")
    t.add_argument("--config", help="YAML file with transfer settings (probe, standardize, seeds, cnn_trials, ...)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one transfer setting, e.g. probe=adam_grid, standardize=per_dim, seeds=[0,1,2]")
    t.add_argument("--allow-unfinished", action="store_true",
                   help="use runs whose training did not finish (no DONE); the output says so")
    t.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    t.set_defaults(func=run_transfer)
    retrieval.add_verbs(verbs)
    tagging.add_verbs(verbs)


def run_holdout(args: argparse.Namespace) -> int:
    # deferred: these import torch, which every other command would then wait for
    from ..evaluation.holdout import holdout_runs
    from ..evaluation.runs import run_store_path

    store = args.store or run_store_path(args.runs[0])
    if store is None:
        raise ConfigError(f"{args.runs[0]}: its config names no store; pass --store STORE")
    result = holdout_runs(args.runs, store=store, which=args.which, n_trials=args.trials,
                          n_negatives=args.negatives, seed=args.seed, allow_overlap=args.allow_overlap,
                          allow_unfinished=args.allow_unfinished)
    print(result.table())
    if args.json:
        atomic_write_json(args.json, obj=result.to_dict())
    return 0 if result.concepts else 1  # every concept skipped: nothing was evaluated


def run_transfer(args: argparse.Namespace) -> int:
    # deferred: these import torch, which every other command would then wait for
    from ..data.prepare import open_or_prepare
    from ..evaluation.baselines import BASELINES
    from ..evaluation.runs import load_run_model
    from ..evaluation.transfer import TransferConfig, transfer_runs

    config = load_config(TransferConfig, path=args.config, overrides=args.set)
    _model, info = load_run_model(args.run[0], allow_unfinished=args.allow_unfinished)
    store = open_or_prepare(store=args.store, catalog=args.catalog, store_dir=args.store_dir,
                           feature_config=info.feature_config)
    baselines = BASELINES if args.baselines is None else args.baselines
    result = transfer_runs(args.run, store=store, config=config, baselines=baselines, dataset=args.name,
                           allow_unfinished=args.allow_unfinished)
    print(result.table())
    if args.json:
        atomic_write_json(args.json, obj=result.to_dict())
    return 0
