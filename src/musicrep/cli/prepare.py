"""``musicrep prepare CATALOG -o STORE [--shard K/N]``: decode every track once into a feature store."""

from __future__ import annotations

import argparse

from ..config import FeatureConfig, load_config
from ..data.catalog import read_csv
from ..data.prepare import prepare
from ..data.shards import parse_shard


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="compute log-mel features for a catalog into a feature store")
    p.add_argument("catalog", help="catalog CSV (musicrep catalog ... -o catalog.csv)")
    p.add_argument("-o", "--out", required=True, help="store folder")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores; 0: in this process)")
    p.add_argument("--overwrite", action="store_true", help="replace a store made with other settings")
    p.add_argument("--retry-errors", action="store_true", help="try again the files an earlier run skipped")
    p.add_argument("--config", help="YAML file with feature settings (sample_rate, n_fft, hop_length, n_mels, ...)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one feature setting")
    p.add_argument("--shard", metavar="K/N", help="store only shard K of N (by a hash of the track id); "
                   "join the N stores with `musicrep store merge`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(FeatureConfig, path=args.config, overrides=args.set)
    shard = parse_shard(args.shard) if args.shard is not None else None
    result = prepare(
        read_csv(args.catalog), out_dir=args.out, config=config, workers=args.workers,
        overwrite=args.overwrite, retry_errors=args.retry_errors, shard=shard,
    )
    which = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    print(f"{result.path}{which}: {result.stored} tracks stored ({result.new} new), {len(result.errors)} unusable")
    for err in result.errors[:10]:
        print(f"  skipped {err['path']}: {err['reason']}" + (f" ({err['detail']})" if err.get("detail") else ""))
    if len(result.errors) > 10:
        print(f"  ... and {len(result.errors) - 10} more in {result.path / 'errors.csv'}")
    for warn in result.warnings[:10]:
        print(f"  stored {warn['path']} in part: {warn['detail']}")
    if len(result.warnings) > 10:
        print(f"  ... and {len(result.warnings) - 10} more damaged files in {result.path / 'errors.csv'}")
    return 0
