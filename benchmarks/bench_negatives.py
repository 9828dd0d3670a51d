"""Training cost per step: N sampled negatives (1..16) vs in-batch negatives, in one process.

    python benchmarks/bench_negatives.py [--width 128] [--batch 15] [--steps 5] [--threads 1]
                                         [--out benchmarks/results/negatives.json]

Times whole joint-model training steps (artist, album and track batches through
one encoder, loss, backward, SGD step) on synthetic crops, for the paper's N
sampled negatives at N = 1, 2, 4, 8, 16 and for in-batch negatives (N = 0: the
batch's other positives) with the hinge and with InfoNCE. Each variant reports
the best of ``--steps`` timed steps after a warm-up, and its ratio to N = 4 (the
paper's), measured in the same process; N = 4 is measured again at the end, so
the two reference figures show how much the machine's load moved meanwhile.
Labels for the in-batch mask are drawn from 6 artists, as on the built-in corpus.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_train import time_steps  # benchmarks/ is on sys.path when run as a script
from musicrep.config import load_config
from musicrep.training.settings import TrainConfig

VARIANTS = [("sampled N=4 (reference)", ["negatives=4"])] + [
    (f"sampled N={n}", [f"negatives={n}"]) for n in (1, 2, 8, 16)] + [
    ("in-batch, hinge", ["negatives=0", "in_batch_negatives=true"]),
    ("in-batch, InfoNCE", ["negatives=0", "in_batch_negatives=true", "loss=infonce"]),
    ("sampled N=4 (reference again)", ["negatives=4"])]


def seconds_per_step(config: TrainConfig, *, steps: int, threads: int) -> float:
    """bench_train's step timer on fixed synthetic crops, one batch per concept."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(config.batch_size, 2 + config.negatives, 129, 128, generator=g)
    labels = {c: np.random.default_rng(0).integers(6, size=config.batch_size) for c in config.concepts}
    return time_steps(config, itertools.repeat({c: x for c in config.concepts}), steps=steps, threads=threads,
                      labels=labels)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=128, help="encoder width (the CPU profile's 128)")
    ap.add_argument("--batch", type=int, default=TrainConfig.batch_size, help="anchors per concept per step")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the README sweeps used 1)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "negatives.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, ref = [], None
    for name, settings in VARIANTS:
        config = load_config(TrainConfig, path=None, overrides=[f"width={args.width}", f"batch_size={args.batch}", "concept=joint",
                                                 *settings])
        sec = seconds_per_step(config, steps=args.steps, threads=args.threads)
        ref = ref or sec
        segments = 3 * config.batch_size * (2 + config.negatives)
        rows.append({"variant": name, "negatives": config.negatives, "in_batch": config.in_batch_negatives,
                     "loss": config.loss, "seconds_per_step": round(sec, 4), "segments_per_step": segments,
                     "ratio_to_n4": round(sec / ref, 3)})
        print(f"  {name:30s} {sec:7.3f} s/step  {segments:4d} segments  x{sec / ref:5.2f} of N=4")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads,
                    "torch": torch.__version__, "python": sys.version.split()[0]},
        "width": args.width, "batch": args.batch, "variants": rows,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
