"""``musicrep corpus build NAME -o DIR`` and ``musicrep corpus list``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.corpus import build_corpus, list_corpora


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("corpus", help="build the built-in real corpus (game soundtracks, folk tunes)")
    sub = parser.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)

    build = sub.add_parser("build", help="download/render a named corpus and write its catalog")
    build.add_argument("name", help="corpus name (see `musicrep corpus list`)")
    build.add_argument("-o", "--out", required=True, type=Path, help="corpus folder to write")
    build.add_argument("--workers", type=int, default=2, help="parallel decoders/renderers (default 2)")
    build.add_argument("--force", action="store_true", help="rebuild even if the corpus is complete")
    build.add_argument("--cache-dir", type=Path, default=None,
                       help="where downloaded .deb files are kept (default OUT/.cache/debs)")
    build.add_argument("--seed", type=int, default=0, help="folk: instrument, tempo, subset and split seed")
    build.add_argument("--max-per-class", type=int, default=None,
                       help="folk: at most this many tunes per tune type")
    build.set_defaults(func=_build)

    lst = sub.add_parser("list", help="list the corpora that can be built")
    lst.set_defaults(func=_list)


def _build(args: argparse.Namespace) -> int:
    path = build_corpus(args.name, out_dir=args.out, workers=args.workers, force=args.force,
                        cache_dir=args.cache_dir, seed=args.seed, max_per_class=args.max_per_class)
    print(path)
    return 0


def _list(args: argparse.Namespace) -> int:
    """One line per corpus: its measured figures ("–": not measured) and description."""

    def cell(value, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    print(f"{'corpus':14s} {'tracks':>6s} {'hours':>6s} {'composers':>9s} {'albums':>6s} {'download':>9s}  description")
    notes = []
    for name, row in list_corpora(figures=True).items():
        download = "–" if row["download_mb"] is None else f"{row['download_mb']:,.0f} MB"
        print(f"{name:14s} {cell(row['tracks'], ',d'):>6s} {cell(row['hours'], '.1f'):>6s} "
              f"{cell(row['composers'], 'd'):>9s} {cell(row['albums'], 'd'):>6s} {download:>9s}  {row['description']}")
        notes.append(f"  {name}: {row['measured']}")
    print("\nfigures measured:")
    print("\n".join(notes))
    return 0
