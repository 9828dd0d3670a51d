"""``musicrep evaluate tagging``: multi-label linear probe (ROC-AUC, PR-AUC) on a tagged collection.

The verb belongs to the ``evaluate`` group (``cli/evaluate.py`` calls
:func:`add_verbs`); this module adds no top-level command of its own.
"""

from __future__ import annotations

import argparse

from ..config import load_config
from ..errors import ConfigError
from ..io import atomic_write_json


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    """Add ``tagging`` to the ``evaluate`` group's verbs."""
    t = verbs.add_parser(
        "tagging", help="multi-label linear probe on song embeddings of a tagged collection (e.g. MagnaTagATune)",
        description="One sigmoid output per tag, trained like the transfer probe (scalar standardisation, SGD lr 0.01 "
                    "Nesterov, batch 16, early stopping on validation loss, 10 trials) on the catalog's own "
                    "train/valid/test split; prints ROC-AUC and PR-AUC, macro over tags, mean +- std [95% "
                    "interval] per run. Make the catalog with `musicrep catalog mtat`.")
    t.add_argument("--run", action="append", required=True, metavar="RUN", help="run folder (repeat for several)")
    t.add_argument("--catalog", help="catalog CSV with the tags and split columns (its store is prepared first "
                                     "unless --store is given)")
    t.add_argument("--store", help="prepared store of the collection (default: prepared from --catalog; the tags "
                                   "come from --catalog when given, else from the store's own catalog)")
    t.add_argument("--store-dir", help="where to prepare the --catalog's store (default: beside the catalog)")
    t.add_argument("--name", help="dataset name for the table (default: the store folder's name)")
    t.add_argument("--config", help="YAML file with tagging settings (seeds, standardize, probe_lr, tag_column, ...)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one tagging setting, e.g. seeds=[0,1,2], standardize=per_dim, tag_column=tags")
    t.add_argument("--allow-unfinished", action="store_true",
                   help="use runs whose training did not finish (no DONE); the output says so")
    t.add_argument("--json", metavar="PATH", help="also write the results (with per-tag AUCs) as JSON")
    t.set_defaults(func=run_tagging)


def run_tagging(args: argparse.Namespace) -> int:
    # deferred: these import torch, which every other command would then wait for
    from ..data.prepare import open_or_prepare
    from ..evaluation.runs import load_run_model
    from ..evaluation.tagging import TaggingConfig, tagging_runs

    if args.store is None and args.catalog is None:
        raise ConfigError("give --catalog CATALOG (the tagged collection), --store STORE, or both")
    config = load_config(TaggingConfig, path=args.config, overrides=args.set)
    if args.store is not None:
        store = open_or_prepare(store=args.store)
    else:
        _model, info = load_run_model(args.run[0], allow_unfinished=args.allow_unfinished)
        store = open_or_prepare(catalog=args.catalog, store_dir=args.store_dir, feature_config=info.feature_config)
    result = tagging_runs(args.run, store=store, catalog=args.catalog, config=config, dataset=args.name,
                          allow_unfinished=args.allow_unfinished)
    print(result.table())
    if args.json:
        atomic_write_json(args.json, obj=result.to_dict())
    return 0
