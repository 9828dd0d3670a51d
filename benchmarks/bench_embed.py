"""End-to-end embedding speed: seconds of audio embedded per second of wall time.

From FLAC files on disk to song vectors, with the paper's 512-d encoder
(width 256; weights do not change the speed, so an untrained one is used):

- ``musicrep``: :meth:`EmbeddingModel.iter_files` (streamed decode + log-mel in a
  prefetch thread, segments of several files batched per forward pass);
- ``musicrep sequential``: the same with everything in one thread, which is
  where the share of time per stage (decode / features / forward) is measured;
- ``reference``: the naive way, in the same process: ``librosa.load`` per file,
  ``librosa.feature.melspectrogram``, one forward pass per 3-s segment.

Usage::

    python benchmarks/bench_embed.py [--files 20 --seconds 30]

Writes ``benchmarks/results/embed.json``; the last line is ``embed: NNNx real time``.
"""

from __future__ import annotations

import dataclasses
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import musicrep  # noqa: E402
from musicrep.data.catalog import read_csv  # noqa: E402
from musicrep.training.checkpoint import save_checkpoint  # noqa: E402
from musicrep.config import FeatureConfig, to_dict  # noqa: E402
from musicrep.training.model import Encoder  # noqa: E402
from musicrep.testing import synth_collection  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "embed.json"


def run_musicrep(model, paths, *, workers: int) -> tuple[float, float, dict]:
    for k in model.timings:
        model.timings[k] = 0.0
    t0 = time.perf_counter()
    seconds = 0.0
    for _, e in model.iter_files(paths, workers=workers):
        seconds += e.duration
    return time.perf_counter() - t0, seconds, dict(model.timings)


def run_reference(encoder, paths) -> float:
    import librosa

    t0 = time.perf_counter()
    for p in paths:
        y, sr = librosa.load(p, sr=22050)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128, power=1.0)
        frames = np.log10(1 + 10 * mel).T.astype(np.float32)
        vecs = []
        with torch.inference_mode():
            for i in range(frames.shape[0] // 129):
                vecs.append(encoder(torch.from_numpy(frames[None, i * 129 : (i + 1) * 129])).numpy())
        np.mean(vecs, axis=0)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each file")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp:
        tmp = Path(tmp)
        per_artist = max(1, args.files // 4)
        catalog = read_csv(synth_collection(tmp / "audio", n_artists=4, albums_per_artist=1, songs_per_album=per_artist,
                                            seconds=args.seconds, seed=1))
        paths = [Path(t.path) for t in catalog][: args.files]
        torch.manual_seed(0)
        enc = Encoder(width=256)
        save_checkpoint({"model": enc.state_dict(), "model_config": dataclasses.asdict(enc.model_config),
                         "feature_config": to_dict(FeatureConfig()), "step": 0, "epoch": 0, "best_metric": 0.0,
                         "config": {}, "concept": "artist"}, path=tmp / "run" / "best.pt")
        model = musicrep.load(tmp / "run", batch_size=args.batch_size)
        model.embed_file(paths[0])  # warm-up: imports, FFT plans, allocator
        seq_wall, audio_s, stages = run_musicrep(model, paths, workers=0)
        wall, audio_s, _ = run_musicrep(model, paths, workers=1)
        ref_wall = run_reference(model.encoder, paths)
    speed = audio_s / wall
    share = {k: round(v / seq_wall, 3) for k, v in stages.items()}
    result = {
        "files": len(paths), "audio_seconds": round(audio_s, 1), "encoder_width": 256, "embedding_dim": 512,
        "musicrep": {"wall_s": round(wall, 3), "x_real_time": round(speed, 1)},
        "musicrep_sequential": {"wall_s": round(seq_wall, 3), "x_real_time": round(audio_s / seq_wall, 1),
                                "share_of_time": share},
        "reference_librosa_per_segment": {"wall_s": round(ref_wall, 3), "x_real_time": round(audio_s / ref_wall, 1)},
        "speedup_vs_reference": round(ref_wall / wall, 2),
        "torch_threads": torch.get_num_threads(), "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "2 shared cores; other jobs were running (see load_average_1min)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(paths)} files, {audio_s / 60:.1f} min of audio, torch threads {torch.get_num_threads()}, "
          f"load {result['load_average_1min']}")
    print(f"sequential: {audio_s / seq_wall:.0f}x real time; time shares: "
          + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))
    print(f"reference (librosa.load + per-segment forward): {audio_s / ref_wall:.0f}x real time")
    print(f"musicrep is {ref_wall / wall:.1f}x faster than the reference; decoding is {share['decode']:.0%} of the time")
    print(f"embed: {speed:.0f}x real time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
