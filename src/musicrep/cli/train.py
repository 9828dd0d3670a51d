"""``musicrep train --store STORE --concept C --negatives N -o RUN``: train an encoder."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ..concepts import PAPER_CONCEPTS
from ..training.profiles import PROFILES, train_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an artist/album/track/joint encoder on a feature store",
                       description="Train a Siamese encoder (Lee, Park & Nam 2019). Under "
                                   "`torchrun --nproc_per_node K` the same command trains with DDP.")
    p.add_argument("--store", required=True, help="feature store folder (musicrep prepare ... -o STORE)")
    p.add_argument("--concept", default=None,
                   help="what a positive shares with the anchor: artist, album, track, joint, or any catalog "
                        "column that groups songs, e.g. label (default: the config's, artist)")
    p.add_argument("--concepts", default=None, metavar="C1,C2,...",
                   help="a joint model over these concepts, e.g. artist,album,label,track (sets concept=joint)")
    p.add_argument("--margins", default=None, metavar="M1,M2,...",
                   help="one hinge margin per --concepts entry, e.g. 0.4,0.25,0.3,0.1")
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
    overrides += _joint_overrides(args.concepts, args.margins)
    if args.negatives is not None:
        overrides.append(f"negatives={args.negatives}")
    return overrides


def _joint_overrides(concepts: str | None, margins: str | None) -> list[str]:
    """``--concepts`` / ``--margins`` as settings: concept=joint, joint=..., margin_<paper concept>, column_margins."""
    if concepts is None:
        if margins is not None:
            raise SystemExit("musicrep train: --margins needs --concepts (one margin per concept)")
        return []
    names = [c.strip() for c in concepts.split(",") if c.strip()]
    out = ["concept=joint", "joint=" + ",".join(names)]
    if margins is None:
        return out
    values = [m.strip() for m in margins.split(",") if m.strip()]
    if len(values) != len(names):
        raise SystemExit(f"musicrep train: --margins gives {len(values)} value(s) for {len(names)} concept(s)")
    columns = [f"{c}={m}" for c, m in zip(names, values) if c not in PAPER_CONCEPTS]
    out += [f"margin_{c}={m}" for c, m in zip(names, values) if c in PAPER_CONCEPTS]
    return out + (["column_margins=" + ",".join(columns)] if columns else [])


def run(args: argparse.Namespace) -> int:
    # deferred: torch (training) and the store's audio stack are slow to import; --help and other verbs need neither
    from ..data.store import open_store
    from ..training.train import train

    out = Path(args.out)
    config_file, profile = args.config, args.profile
    if args.resume and config_file is None and profile is None and (out / "config.yaml").is_file():
        config_file = out / "config.yaml"  # the run's own settings; --set may change the resumable ones
    catalog = None
    if profile == "auto":
        catalog = open_store(args.store).catalog
    config, why = train_config(profile=profile, config_file=config_file, overrides=_overrides(args), catalog=catalog)
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, one line, not one per process
    if why and main_rank:
        print("profile auto chose:\n  " + "\n  ".join(why), file=sys.stderr)
    try:
        run_dir = train(args.store, out_dir=out, config=config, resume=args.resume)
    except KeyboardInterrupt:
        if main_rank:
            command = shlex.join(["musicrep", "train", "--store", str(args.store), "-o", str(out), "--resume"])
            print(f"interrupted; the run resumes from its last finished epoch with:\n  {command}", file=sys.stderr)
        return 130
    if main_rank:
        print(f"{run_dir}: trained {config.concept} model (best: {run_dir / 'best.pt'})")
    return 0
