"""``musicrep sweep negatives|artists VALUE...``: the paper's Tables 3 and 4 (resumable)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="train joint models over a range of negatives or artists and run the transfer test")
    p.add_argument("kind", choices=("negatives", "artists"), help="what to vary (Table 3: negatives, Table 4: artists)")
    p.add_argument("values", nargs="+", type=int, metavar="VALUE", help="e.g. 1 2 4 8 16")
    p.add_argument("--store", required=True, help="feature store to train on")
    p.add_argument("--transfer-store", required=True, help="genre-labelled feature store for the transfer test")
    p.add_argument("-o", "--out", required=True, help="sweep folder; rerun the same command to resume")
    p.add_argument("--config", help="YAML file with training settings (e.g. src/musicrep/configs/cpu.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one training setting")
    p.add_argument("--transfer-config", help="YAML file with transfer settings")
    p.add_argument("--transfer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one transfer setting (e.g. seeds=[0,1,2])")
    p.add_argument("--trials", type=int, default=1000, help="hold-out trials per concept per point (0: skip)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..sweep import run_sweep
    from ..train import TrainConfig
    from ..transfer import TransferConfig

    result = run_sweep(
        kind=args.kind, values=args.values, store=args.store, transfer_store=args.transfer_store, out_dir=args.out,
        train_config=load_config(TrainConfig, args.config, args.set),
        transfer_config=load_config(TransferConfig, args.transfer_config, args.transfer_set),
        holdout_trials=args.trials,
    )
    print(result.table())
    if result.failed:
        print(f"{len(result.failed)} point(s) failed; fix the cause and rerun the same command to resume")
        return 1
    return 0
