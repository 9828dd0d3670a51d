"""``musicrep store merge STORE... -o STORE [--allow-partial]``: join the shard stores of one catalog."""

from __future__ import annotations

import argparse

from ..data.merge import merge_stores


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="work with feature stores (merge the shards of a catalog)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    merge = verbs.add_parser(
        "merge", help="join finished stores (`musicrep prepare --shard K/N`) into one store",
        description="Checks that every store is finished, that all hold the same feature settings and no track "
                    "twice, and that every shard of the catalog is there; the merged store equals one `prepare` "
                    "of the whole catalog. Rerun after a kill to continue.")
    merge.add_argument("stores", nargs="+", metavar="STORE", help="store folders, e.g. stores/shard-*")
    merge.add_argument("-o", "--out", required=True, help="the merged store's folder")
    merge.add_argument("--allow-partial", action="store_true", help="merge even when shards are missing")
    merge.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    result = merge_stores(inputs=args.stores, out_dir=args.out, allow_partial=args.allow_partial)
    state = "up to date" if result.up_to_date else f"merged {len(args.stores)} stores"
    print(f"{result.path}: {state}: {result.stored} tracks stored, {len(result.errors)} unusable")
    if result.missing:
        print(f"  without shard(s) {', '.join(map(str, result.missing))} (--allow-partial)")
    return 0
