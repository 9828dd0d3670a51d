"""``musicrep run``: the main job on the built-in corpus (see musicrep.pipeline)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..pipeline import PROFILES

    p = sub.add_parser(
        "run",
        help="build the built-in corpus, prepare features, train the four models, evaluate, report",
        description="The main job. Every stage is resumable: rerun the same command after an interruption.",
    )
    p.add_argument("-o", "--out", default="work", help="work folder (default: work)")
    p.add_argument("--profile", default="default", choices=sorted(PROFILES), help="CPU-sized settings (quick: a few minutes)")
    p.add_argument("--quick", action="store_const", const="quick", dest="profile", help="same as --profile quick")
    p.add_argument("--config", help="YAML file overriding the profile's settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting, e.g. train.epochs=5")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import profile_config, run_pipeline

    config = profile_config(args.profile, config_file=args.config, overrides=tuple(args.set))
    report = run_pipeline(args.out, config=config)
    print(f"report: {report / 'report.md'}")
    return 0
