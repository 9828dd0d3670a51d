"""Feature preparation speed: ``musicrep prepare`` against decoding alone and against librosa.

Decode-only is the floor no feature store can beat: the same files through the
same loader the store uses (:func:`musicrep.data.audio.stream_audio`, at the
feature rate, with the same too-short check), on a process pool of the same
size, started the same way, with nothing computed or written. ``prepare`` at
0.85 of its speed or more means the log-mel and the store cost little beside
decoding, which then is what to speed up (the goal of issue "Paper scale").

The librosa reference is what one would write first: for each file, one process,
``librosa.load(path, sr=22050)`` then ``librosa.feature.melspectrogram`` (power 1)
and the paper's compression, results kept in memory. musicrep's ``prepare``
does more (writes a float16 store, atomically, with resume bookkeeping) on all
cores. All three run on the same synthesised files in this process, best of
``--repeats`` each, the reference after a warm-up call (so numba's compilation is
not counted).

    python benchmarks/bench_prepare.py [--files 24] [--seconds 30] [--format ogg]

Prints clips/s for each, ``prepare runs at X of decode-only speed; goal >= 0.85``
and, as its last line, ``prepare: N.Nx librosa reference``.
Figures go to benchmarks/results/prepare.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from musicrep.data import prepare_workers as store_module
from musicrep.data.audio import stream_audio
from musicrep.data.catalog import Catalog, Track
from musicrep.config import FeatureConfig
from musicrep.data.features import min_samples_for
from musicrep.data.prepare import prepare
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


def _decode(path: str, sr: int, min_samples: int) -> int:
    """Samples of ``path`` as the store's worker decodes them, consumed block by block and dropped."""
    return sum(len(block) for block in stream_audio(path, sr=sr, min_samples=min_samples))


def decode_only(paths: list[Path], *, workers: int, config: FeatureConfig) -> float:
    """Seconds to decode every file on a pool set up as ``prepare``'s (start method, one thread per worker)."""
    args = ([str(p) for p in paths], [config.sample_rate] * len(paths), [min_samples_for(config)] * len(paths))
    t0 = time.perf_counter()
    if workers == 0:
        list(map(_decode, *args))
    else:
        ctx = mp.get_context(store_module._start_method())
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=store_module._init_worker,
                                    initargs=(os.getpid(),)) as pool:
            list(pool.map(_decode, *args))
    return time.perf_counter() - t0


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
        ref_times, decode_times, ours_times = [], [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            ref = reference(paths)
            ref_times.append(time.perf_counter() - t0)
            decode_times.append(decode_only(paths, workers=args.workers, config=FeatureConfig()))
            catalog = Catalog([Track(p.stem, str(p)) for p in paths])
            store = tmp / f"store{r}"
            t0 = time.perf_counter()
            prepare(catalog, out_dir=store, workers=args.workers)
            ours_times.append(time.perf_counter() - t0)
        from musicrep.data.store import open_store

        fs = open_store(tmp / "store0")
        err = max(float(np.abs(fs.frames(p.stem) - m).max()) for p, m in zip(paths, ref))
        ref_rate = args.files / min(ref_times)
        ours_rate = args.files / min(ours_times)
        decode_rate = args.files / min(decode_times)
        ratio = ours_rate / ref_rate
        of_decode = ours_rate / decode_rate
        figures = {
            "files": args.files, "seconds_per_file": args.seconds, "format": args.format,
            "workers": args.workers, "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "reference_clips_per_s": round(ref_rate, 3), "musicrep_clips_per_s": round(ours_rate, 3),
            "ratio": round(ratio, 3), "max_abs_diff_vs_reference": err,
            "decode_only_clips_per_s": round(decode_rate, 3), "prepare_vs_decode_only": round(of_decode, 3),
            "prepare_vs_decode_only_goal": 0.85,
            "reference_times_s": ref_times, "decode_only_times_s": decode_times, "musicrep_times_s": ours_times,
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "prepare.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(f"reference (librosa, 1 process): {ref_rate:.2f} clips/s")
        print(f"decode only ({args.workers} workers, musicrep.data.audio, no features, no store): {decode_rate:.2f} clips/s")
        print(f"musicrep prepare ({args.workers} workers): {ours_rate:.2f} clips/s  (max |diff| {err:.2g}, float16 store)")
        print(f"prepare runs at {of_decode:.2f} of decode-only speed; goal >= 0.85")
        print(f"prepare: {ratio:.1f}x librosa reference")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
