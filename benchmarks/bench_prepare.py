"""Feature preparation speed: ``musicrep prepare`` against the straightforward reference.

The reference is what one would write first: for each file, one process,
``librosa.load(path, sr=22050)`` then ``librosa.feature.melspectrogram`` (power 1)
and the paper's compression, results kept in memory. musicrep's ``prepare``
does more (writes a float16 store, atomically, with resume bookkeeping) on all
cores. Both run on the same synthesised files in this process, the reference
first after a warm-up call (so numba's compilation is not counted).

    python benchmarks/bench_prepare.py [--files 24] [--seconds 30] [--format ogg]

Prints clips/s for both and, as its last line, ``prepare: N.Nx librosa reference``.
Figures go to benchmarks/results/prepare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from musicrep.catalog import Catalog, Track
from musicrep.store import prepare
from musicrep.testing import synth_song

RESULTS = Path(__file__).resolve().parent / "results"


def make_files(folder: Path, *, n: int, seconds: float, fmt: str, sr: int = 44100) -> list[Path]:
    """Stereo files at 44.1 kHz, the common case for a music collection."""
    paths = []
    subtype = "VORBIS" if fmt == "ogg" else None
    for i in range(n):
        y = synth_song(artist=i % 5, album=i % 3, song=i, seconds=seconds, sr=sr)
        stereo = np.stack([y, np.roll(y, 100)], axis=1)
        path = folder / f"clip{i:03d}.{fmt}"
        sf.write(path, stereo, sr, subtype=subtype)
        paths.append(path)
    return paths


def reference(paths: list[Path]) -> list[np.ndarray]:
    import librosa

    out = []
    for p in paths:
        y, _ = librosa.load(p, sr=22050)
        mel = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=512, n_mels=128, power=1.0)
        out.append(np.log10(1 + 10 * mel).T)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--format", default="ogg", choices=("ogg", "flac", "wav"))
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=2, help="best of N for each side")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        paths = make_files(tmp, n=args.files, seconds=args.seconds, fmt=args.format)
        reference(paths[:1])  # warm-up: numba compiles librosa's helpers once
        ref_times, ours_times = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            ref = reference(paths)
            ref_times.append(time.perf_counter() - t0)
            catalog = Catalog([Track(p.stem, str(p)) for p in paths])
            store = tmp / f"store{r}"
            t0 = time.perf_counter()
            prepare(catalog, store, workers=args.workers)
            ours_times.append(time.perf_counter() - t0)
        from musicrep.store import FeatureStore

        fs = FeatureStore(tmp / "store0")
        err = max(float(np.abs(fs.frames(p.stem) - m).max()) for p, m in zip(paths, ref))
        ref_rate = args.files / min(ref_times)
        ours_rate = args.files / min(ours_times)
        ratio = ours_rate / ref_rate
        figures = {
            "files": args.files, "seconds_per_file": args.seconds, "format": args.format,
            "workers": args.workers, "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "reference_clips_per_s": round(ref_rate, 3), "musicrep_clips_per_s": round(ours_rate, 3),
            "ratio": round(ratio, 3), "max_abs_diff_vs_reference": err,
            "reference_times_s": ref_times, "musicrep_times_s": ours_times,
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "prepare.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(f"reference (librosa, 1 process): {ref_rate:.2f} clips/s")
        print(f"musicrep prepare ({args.workers} workers): {ours_rate:.2f} clips/s  (max |diff| {err:.2g}, float16 store)")
        print(f"prepare: {ratio:.1f}x librosa reference")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
