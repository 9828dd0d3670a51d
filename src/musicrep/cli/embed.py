"""``musicrep embed [--run RUN] PATH... (-o OUT | --table T.npz|.csv|.npy|.parquet) [--segments]``."""

from __future__ import annotations

import sys

from ..data.catalog import read_csv


def _run(args) -> int:
    # deferred: the model API imports torch, slow to import; only this command needs it
    from ..inference.embed import load
    from ..inference.embed_job import embed_to_files

    model = load(args.run, which=args.which, batch_size=args.batch_size, allow_unfinished=args.allow_unfinished)
    report = embed_to_files(
        model=model,
        inputs=args.paths,
        out=args.output,
        table=args.table,
        catalog=read_csv(args.catalog) if args.catalog else None,
        overwrite=args.overwrite,
        segments=args.segments,
        recursive=not args.no_recursive,
        workers=args.workers,
    )
    for err in report.errors:
        print(f"skipped {err}", file=sys.stderr)
    where = args.table or args.output
    if model.unfinished:
        print(f"WARNING: {model.run_dir} did not finish training (no DONE): these vectors come from "
              f"{model.checkpoint.name}, not from a finished run", file=sys.stderr)
    print(
        f"{where}: embedded {len(report.embedded)} file(s) ({report.seconds_of_audio / 60:.1f} min of audio), "
        f"{len(report.already_done)} already done, {len(report.errors)} unusable"
    )
    return 0 if report.embedded or report.already_done else 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "embed",
        help="song embeddings of audio files and folders",
        description="Embed audio files and folders (recursively): one .npz per file (the folder tree mirrored "
        "under -o) or one table for all (--table). Without --run, the model shipped with musicrep is used "
        "(a small joint model trained on game soundtracks; see musicrep/models/MODEL_CARD.md). A song's "
        "vector is the mean of its non-overlapping 3-s segments' vectors. Unusable files are reported by name "
        "and skipped. Exit status 1 when nothing could be embedded.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    p.add_argument("--run", metavar="RUN", help="run folder or checkpoint file (default: the shipped model)")
    p.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of a run folder (default: best)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="OUT", help="folder for one .npz per audio file")
    out.add_argument("--table", metavar="TABLE",
                     help="one table for all files, one row per file (id, path, metadata, checkpoint_sha256, "
                     "feature_hash, vector): .npz; .csv (columns e0..); .npy (float32 [N, D] matrix, with "
                     "TABLE.ids.txt, one id per line in row order, and TABLE.json, the other columns); "
                     ".parquet (needs pip install 'musicrep[parquet]')")
    p.add_argument("--catalog", metavar="CSV", help="catalog whose metadata (track_id, artist, album, title, genre) goes with the vectors")
    p.add_argument("--segments", action="store_true",
                   help="also store per-segment vectors and their start/end times (s): 'segments' [S, D] and "
                   "'times' [S, 2] in each .npz; with --table, a second table TABLE.segments.EXT with one row "
                   "per segment (id, path, segment, start, end, stamp, vector)")
    p.add_argument("--overwrite", action="store_true",
                   help="embed again files whose output exists (needed when outputs of another model are there)")
    p.add_argument("--allow-unfinished", action="store_true",
                   help="use a run whose training did not finish (no DONE), with a warning")
    p.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="decoding threads (default: 1)")
    p.add_argument("--batch-size", type=int, default=128, metavar="N", help="segments per forward pass (default: 128)")
    p.set_defaults(func=_run)
