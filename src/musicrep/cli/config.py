"""``musicrep config show [--profile P] [--set K=V]``: the effective training settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ..config import to_dict
from ..data.store import open_store
from ..training.profiles import PROFILES, train_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show training settings and profiles")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser("show", help="print the effective training settings as YAML",
                            description="Profile, then --config, then --set, as `musicrep train` applies them.")
    show.add_argument("--profile", choices=PROFILES, default=None, help="named settings (default: the paper's)")
    show.add_argument("--config", help="YAML file of training settings, or a profile name")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    show.add_argument("--store", help="the feature store `--profile auto` reads the catalog of")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    catalog = None
    if args.store is not None:
        catalog = open_store(Path(args.store)).catalog
    config, why = train_config(profile=args.profile, config_file=args.config, overrides=args.set, catalog=catalog)
    for line in why:
        print(f"# {line}")
    sys.stdout.write(yaml.safe_dump(to_dict(config), sort_keys=False))
    return 0
