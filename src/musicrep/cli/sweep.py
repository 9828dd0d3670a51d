"""``musicrep sweep SETTING VALUE...``: the margin grid search, Tables 3 and 4, any setting (resumable)."""

from __future__ import annotations

import argparse

from ..config import load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train one model per value of a training setting (margins, negatives, artists, lr...); "
             "select on validation accuracy",
        description="Train one model per value of one training setting, resumably; each point records its "
                    "validation figures at the best checkpoint, and the value with the best validation accuracy "
                    "is selected (none for settings that change the validation task itself, such as negatives "
                    "or the split sizes). The hold-out and transfer tests are reported, never used to select.",
    )
    p.add_argument("kind", metavar="SETTING",
                   help="a named kind (negatives: Table 3, artists: Table 4, games: the number of training games, "
                        "n_games; all train joint models) or any "
                        "training setting name (e.g. margin_artist, margin_album, margin_track, lr, batch_size, "
                        "width); a margin_<concept> sweep trains <concept> models unless --set concept=... "
                        "says otherwise")
    p.add_argument("values", nargs="+", metavar="VALUE",
                   help="values to try, read like --set values (e.g. 0.1 0.2 0.3 0.4 0.5, or 1 2 4 8 16)")
    p.add_argument("--store", required=True, help="feature store to train on")
    p.add_argument("--transfer-store", action="append", default=[],
                   help="genre-labelled feature store for the transfer test, named by its folder; repeat for "
                        "several targets (default: no transfer test)")
    p.add_argument("-o", "--out", required=True, help="sweep folder; rerun the same command to resume or add values")
    p.add_argument("--config", help="YAML file with training settings (e.g. src/musicrep/configs/cpu.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one training setting")
    p.add_argument("--transfer-config", help="YAML file with transfer settings")
    p.add_argument("--transfer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one transfer setting (e.g. seeds=[0,1,2])")
    p.add_argument("--trials", type=int, default=1000, help="hold-out trials per concept per point (0: skip)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: these import torch, which every other command would then wait for
    from ..evaluation.sweep import run_sweep
    from ..evaluation.sweep_plan import explicit_settings, format_value
    from ..evaluation.transfer import TransferConfig
    from ..training.settings import TrainConfig

    base = load_config(TrainConfig, path=args.config, overrides=args.set)
    result = run_sweep(
        kind=args.kind, values=args.values, store=args.store, transfer_store=args.transfer_store,
        out_dir=args.out,
        train_config=base,
        transfer_config=load_config(TransferConfig, path=args.transfer_config, overrides=args.transfer_set),
        holdout_trials=args.trials,
        concept=base.concept if "concept" in explicit_settings(args.config, overrides=args.set) else None,
    )
    print(result.table())
    for w in result.warnings():
        print(f"WARNING: {w}")
    point = result.selected_point
    if not result.selectable:
        print(f"nothing selected: {result.field or result.kind} changes the validation task (chance level or "
              "validation songs), so its validation accuracies are not comparable")
    elif point is None:
        print("no point has validation figures yet: nothing selected")
    else:
        print(f"selected by validation accuracy: {result.field}={format_value(point.value)}")
    if result.failed:
        print(f"{len(result.failed)} point(s) failed; fix the cause and rerun the same command to resume")
        return 1
    return 0
