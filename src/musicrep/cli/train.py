"""``musicrep train --store STORE --concept C --negatives N -o RUN``: train an encoder."""

from __future__ import annotations

import argparse
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an artist/album/track/joint encoder on a feature store",
                       description="Train a Siamese encoder (Lee, Park & Nam 2019). Under "
                                   "`torchrun --nproc_per_node K` the same command trains with DDP.")
    p.add_argument("--store", required=True, help="feature store folder (musicrep prepare ... -o STORE)")
    p.add_argument("--concept", choices=("artist", "album", "track", "joint"), default=None,
                   help="what a positive shares with the anchor (default: the config's, artist)")
    p.add_argument("--negatives", type=int, default=None, help="negatives per anchor (default: 4)")
    p.add_argument("-o", "--out", required=True, help="run folder for checkpoints, metrics and the split")
    p.add_argument("--config", help="YAML file of training settings (e.g. the packaged configs/cpu.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in the output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..train import TrainConfig, train

    overrides = list(args.set)
    if args.concept is not None:
        overrides.append(f"concept={args.concept}")
    if args.negatives is not None:
        overrides.append(f"negatives={args.negatives}")
    config = load_config(TrainConfig, args.config, overrides)
    run_dir = train(args.store, args.out, config, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        print(f"{run_dir}: trained {config.concept} model (best: {run_dir / 'best.pt'})")
    return 0
