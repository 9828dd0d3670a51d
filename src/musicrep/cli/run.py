"""``musicrep run``: the main job, on the built-in corpus or on your catalogs (see musicrep.pipeline)."""

from __future__ import annotations

import argparse
import json

from ..pipeline import PROFILES, profile_config, run_pipeline


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the whole job: corpus or your catalogs -> features -> four models -> Tables 1-4 -> report",
        description="The main job. Every stage is resumable: rerun the same command after an interruption. "
                    "Profiles: default (the built-in corpus on a CPU, ~15 min), quick (a few minutes), "
                    "paper (the paper's scale on your data: --train-catalog and --transfer-catalog; a GPU job).",
    )
    p.add_argument("-o", "--out", default="work", help="work folder (default: work)")
    p.add_argument("--profile", default="default", choices=sorted(PROFILES),
                   help="default and quick: the built-in corpus on a CPU; paper: the paper's settings on your data")
    p.add_argument("--quick", action="store_const", const="quick", dest="profile", help="same as --profile quick")
    p.add_argument("--train-catalog", metavar="CSV",
                   help="catalog to train the four models on, instead of the built-in corpus (e.g. from "
                        "`musicrep catalog msd track_metadata.db audio/ -o msd.csv`)")
    p.add_argument("--transfer-catalog", action="append", default=[], metavar="CSV",
                   help="genre-labelled catalog for Table 2, once per dataset, instead of the built-in folk "
                        "corpus (e.g. `musicrep catalog gtzan gtzan/ --splits SPLITS -o gtzan.csv`, "
                        "`musicrep catalog fma tracks.csv fma_small/ --subset small -o fma_small.csv`); a "
                        "file named gtzan*.csv or fma_small*.csv is shown beside the paper's number. "
                        "Table 3 and 4 use the first")
    p.add_argument("--config", help="YAML file overriding the profile's settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. train.epochs=5 or sweep_artists=[100,200]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.set)
    if args.train_catalog:
        overrides.append(f"train_catalog={json.dumps(args.train_catalog)}")
    if args.transfer_catalog:
        overrides.append(f"transfer_catalogs={json.dumps(args.transfer_catalog)}")
    config = profile_config(args.profile, config_file=args.config, overrides=tuple(overrides))
    report = run_pipeline(args.out, config=config)
    print(f"report: {report / 'report.md'}")
    return 0
