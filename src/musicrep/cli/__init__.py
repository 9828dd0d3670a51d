"""``musicrep <verb>``: a thin shell over the library.

Each module in this package defines ``add_parser(subparsers)`` and registers a
``func(args) -> int`` with ``set_defaults``; modules are discovered here, so a
new verb group is one new file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from .. import __version__, progress
from ..errors import MusicrepError

log = logging.getLogger("musicrep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicrep",
        description="Learn and use music representations from artist, album and track metadata.",
    )
    parser.add_argument("--version", action="version", version=f"musicrep {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars; warnings and errors only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser"):  # the others add verbs to a command (e.g. cli/retrieval.py to evaluate)
            module.add_parser(sub)
    _add_common_flags(sub)
    return parser


def _add_common_flags(sub: argparse._SubParsersAction) -> None:
    """Accept ``-q``/``-v`` after any (sub)command too: ``musicrep embed x.mp3 -q``.

    SUPPRESS as the default keeps a flag given before the subcommand from being reset.
    """
    for parser in {id(p): p for p in sub.choices.values()}.values():
        parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                            help="no progress bars; warnings and errors only")
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_common_flags(action)


def setup_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    log_at(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


def log_at(level: int) -> None:
    """musicrep's log lines on stderr from ``level`` up (the CLI's, and a pipeline worker process's)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("musicrep").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(quiet=args.quiet, verbose=args.verbose)
    progress.set_enabled(False if args.quiet else None)  # else MUSICREP_QUIET decides
    try:
        return int(args.func(args) or 0)
    except MusicrepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
