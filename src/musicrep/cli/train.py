"""``musicrep train --store STORE --concept C --negatives N -o RUN``: train an encoder."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..profiles import PROFILES

    p = sub.add_parser("train", help="train an artist/album/track/joint encoder on a feature store",
                       description="Train a Siamese encoder (Lee, Park & Nam 2019). Under "
                                   "`torchrun --nproc_per_node K` the same command trains with DDP.")
    p.add_argument("--store", required=True, help="feature store folder (musicrep prepare ... -o STORE)")
    p.add_argument("--concept", choices=("artist", "album", "track", "joint"), default=None,
                   help="what a positive shares with the anchor (default: the config's, artist)")
    p.add_argument("--negatives", type=int, default=None, help="negatives per anchor (default: 4)")
    p.add_argument("-o", "--out", required=True, help="run folder for checkpoints, metrics and the split")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="named settings: paper (the defaults: a GPU job), cpu (the main job's), small "
                        "(~50 songs), auto (chosen from the store's catalog; prints why). "
                        "`musicrep config show --profile P` prints them")
    p.add_argument("--config", help="YAML file of training settings, or a profile name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in the output folder, with its own config.yaml")
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.set)
    if args.concept is not None:
        overrides.append(f"concept={args.concept}")
    if args.negatives is not None:
        overrides.append(f"negatives={args.negatives}")
    return overrides


def run(args: argparse.Namespace) -> int:
    from ..profiles import train_config
    from ..train import train

    out = Path(args.out)
    config_file, profile = args.config, args.profile
    if args.resume and config_file is None and profile is None and (out / "config.yaml").is_file():
        config_file = out / "config.yaml"  # the run's own settings; --set may change the resumable ones
    catalog = None
    if profile == "auto":
        from ..store import FeatureStore

        catalog = FeatureStore(Path(args.store)).catalog
    config, why = train_config(profile=profile, config_file=config_file, overrides=_overrides(args), catalog=catalog)
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, one line, not one per process
    if why and main_rank:
        print("profile auto chose:\n  " + "\n  ".join(why), file=sys.stderr)
    try:
        run_dir = train(args.store, out, config, resume=args.resume)
    except KeyboardInterrupt:
        if main_rank:
            command = shlex.join(["musicrep", "train", "--store", str(args.store), "-o", str(out), "--resume"])
            print(f"interrupted; the run resumes from its last finished epoch with:\n  {command}", file=sys.stderr)
        return 130
    if main_rank:
        print(f"{run_dir}: trained {config.concept} model (best: {run_dir / 'best.pt'})")
    return 0
