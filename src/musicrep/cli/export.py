"""``musicrep export [--run RUN] -o model.onnx``."""

from __future__ import annotations

import sys


def _run(args) -> int:
    # deferred: the model API and the exporter import torch, slow to import; only this command needs them
    from ..inference.embed import load
    from ..inference.export import export_onnx

    model = load(args.run, which=args.which, allow_unfinished=args.allow_unfinished)
    path = export_onnx(model_or_run=model, out=args.output, opset=args.opset, check=not args.no_check)
    if model.unfinished:
        print(f"WARNING: {model.run_dir} did not finish training (no DONE): {path} holds its "
              f"{model.checkpoint.name}, marked musicrep.unfinished", file=sys.stderr)
    check = "" if args.no_check else "; matches PyTorch on random input"
    print(f"{path}: ONNX opset {args.opset}, input logmel [segments, {model.segment_frames}, {model.encoder.n_mels}] "
          f"-> embedding [segments, {model.dim}]{check}")
    print(f"  song vector = mean of the embeddings of the song's non-overlapping {model.segment_frames}-frame "
          "segments (trailing partial segment dropped), as musicrep embed writes it")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained encoder to ONNX",
        description="Write the encoder (with its input normalisation) as ONNX. Input 'logmel': raw log-mel "
        "segments [segments, 129, n_mels] (the frame axis is fixed; the segment axis is dynamic); output "
        "'embedding': one vector per segment [segments, D]. To get the song vector that `musicrep embed` "
        "writes, cut the song's log-mel [T, n_mels] into T // 129 consecutive segments (drop the trailing "
        "partial one), run them and take the plain mean of the rows; the model's metadata says the same "
        "(musicrep.input, musicrep.song_vector) and holds the front-end settings (musicrep.feature_config). "
        "Without --run, the model shipped with musicrep is exported.",
    )
    p.add_argument("--run", metavar="RUN", help="run folder or checkpoint file (default: the shipped model)")
    p.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of a run folder (default: best)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_ONNX", help="ONNX file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check against PyTorch")
    p.add_argument("--allow-unfinished", action="store_true",
                   help="export a run whose training did not finish (no DONE), with a warning")
    p.set_defaults(func=_run)
