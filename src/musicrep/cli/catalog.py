"""``musicrep catalog {folder,csv,fma,gtzan,msd,mtat} ... -o catalog.csv``."""

from __future__ import annotations

import argparse

from ..data import datasets
from ..data.datasets.fma import VALID_SUBSETS


def _write(catalog, skipped, output: str, casefold_labels: bool = False) -> int:
    if casefold_labels:
        catalog = catalog.normalized(casefold=True)
    path = catalog.write_csv(output)
    print(f"{path}: {datasets.summary_line(catalog, skipped=skipped)}")
    return 0


def _folder(args) -> int:
    skipped: list = []
    kwargs = {"extensions": args.ext} if args.ext else {}
    catalog = datasets.from_folder(
        args.dir, read_tags=not args.no_tags, with_duration=not args.no_duration, skipped=skipped, **kwargs
    )
    return _write(catalog, skipped, args.output, args.casefold_labels)


def _csv(args) -> int:
    skipped: list = []
    catalog = datasets.from_csv(args.file, check_files=not args.no_check, skipped=skipped)
    return _write(catalog, skipped, args.output, args.casefold_labels)


def _fma(args) -> int:
    skipped: list = []
    catalog = datasets.from_fma(args.tracks_csv, audio_dir=args.audio_dir, subset=args.subset, skipped=skipped)
    return _write(catalog, skipped, args.output, args.casefold_labels)


def _gtzan(args) -> int:
    skipped: list = []
    catalog = datasets.from_gtzan(args.dir, split_dir=args.splits, skipped=skipped)
    return _write(catalog, skipped, args.output, args.casefold_labels)


def _msd(args) -> int:
    skipped: list = []
    catalog = datasets.from_msd(args.db, audio_dir=args.audio_dir, skipped=skipped)
    return _write(catalog, skipped, args.output, args.casefold_labels)


def _mtat(args) -> int:
    skipped: list = []
    catalog = datasets.from_mtat(args.dir, top=args.top, keep_untagged=args.keep_untagged, audio_dir=args.audio_dir,
                                 skipped=skipped)
    return _write(catalog, skipped, args.output, args.casefold_labels)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="build a catalog CSV from a folder or a public dataset's metadata",
        description="Build a catalog CSV (track_id, path, artist, album, title, genre, duration, ...).",
    )
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)

    def source(name: str, help: str) -> argparse.ArgumentParser:
        p = sources.add_parser(name, help=help, description=help)
        p.add_argument("-o", "--output", required=True, metavar="CATALOG_CSV", help="catalog CSV to write")
        p.add_argument("--casefold-labels", action="store_true",
                       help="fold the case of artist, album, title and genre ('ABBA' and 'Abba' become one artist)")
        return p

    p = source("folder", "a folder of tagged audio (falls back to Artist/Album/NN Title.ext)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--ext", action="append", metavar=".EXT", help="audio file ending to take (repeatable; default: common formats)")
    p.add_argument("--no-tags", action="store_true", help="use only the folder layout, not the tags")
    p.add_argument("--no-duration", action="store_true", help="do not read durations (faster)")
    p.set_defaults(func=_folder)

    p = source("csv", "a catalog CSV with track_id and path columns (checks the audio files exist)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--no-check", action="store_true", help="keep rows whose audio file is missing")
    p.set_defaults(func=_csv)

    p = source("fma", "the Free Music Archive: fma_metadata/tracks.csv and an audio folder (000/000002.mp3)")
    p.add_argument("tracks_csv", metavar="TRACKS_CSV")
    p.add_argument("audio_dir", metavar="AUDIO_DIR")
    p.add_argument("--subset", choices=VALID_SUBSETS, help="keep this subset (nested: medium includes small)")
    p.set_defaults(func=_fma)

    p = source("gtzan", "GTZAN: genres/<genre>/<genre>.000NN.wav")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--splits", metavar="DIR", help="folder with train_filtered.txt, valid_filtered.txt, test_filtered.txt")
    p.set_defaults(func=_gtzan)

    p = source("msd", "the Million Song Dataset: track_metadata.db and audio named by track id")
    p.add_argument("db", metavar="DB")
    p.add_argument("audio_dir", metavar="AUDIO_DIR")
    p.set_defaults(func=_msd)

    p = source("mtat", "MagnaTagATune: annotations_final.csv (tab-separated) and audio in 0/ .. f/; "
                       "top-N tags, split by folder (0-b train, c valid, d-f test)")
    p.add_argument("dir", metavar="DIR", help="the folder holding annotations_final.csv (and clip_info_final.csv)")
    p.add_argument("--top", type=int, default=50, help="keep the N most frequent tags (default 50)")
    p.add_argument("--keep-untagged", action="store_true",
                   help="keep clips with none of the top-N tags (left out by default, as in the common benchmark)")
    p.add_argument("--audio-dir", metavar="DIR", help="the folder holding 0/ .. f/ (default: DIR or DIR/mp3)")
    p.set_defaults(func=_mtat)
