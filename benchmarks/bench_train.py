"""Training throughput: trained segments/s and model-FLOP rate vs the machine's fp32 matmul rate.

    python benchmarks/bench_train.py [--width 256] [--batch 64] [--negatives 4] [--steps 3]
                                     [--out benchmarks/results/train.json]

Both rates are measured in this process, one after the other, so the ratio is
about this machine as it is now (a shared box shows in both). The model-FLOP
count is analytic: 2 x MACs of every convolution for the forward pass, x3 for
forward + backward (BatchNorm, ReLU, pooling and the optimizer are not counted,
as in the usual "model FLOPs utilisation"). Each variant times whole training
steps (forward of anchor + positive + N negatives, hinge loss, backward, SGD
Nesterov step) and reports the best of its timed steps.

Variants: the default (fp32, [B, T, 128] input as the store gives it), a
channels-first contiguous input, bf16 autocast, smaller and larger batches,
one vs all threads, and data loading from a real memory-mapped store (inline,
prefetch thread, a worker process). The last line is the default setting fed
by the default loader (the prefetch thread), i.e. what ``musicrep train`` gets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from musicrep.config import load_config
from musicrep.training.model import Encoder
from musicrep.training.settings import TrainConfig
from musicrep.training.steps import _make_optimizer, step_losses


def matmul_rate(*, n: int = 2048, seconds: float = 2.0, dtype=torch.float32) -> float:
    """Best fp32 GEMM rate in FLOP/s over ~``seconds``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def model_flops_per_segment(width: int, n_mels: int = 128, frames: int = 129) -> float:
    """Forward FLOPs (2 x MACs of the convolutions) of one segment, from the model itself."""
    model = Encoder(width=width, n_mels=n_mels).eval()
    macs = []

    def hook(mod, inp, out):
        macs.append(out.shape[-1] * mod.out_channels * mod.in_channels * mod.kernel_size[0])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    with torch.no_grad():
        model(torch.zeros(1, frames, n_mels))
    for h in handles:
        h.remove()
    return 2.0 * sum(macs)


def time_steps(config: TrainConfig, batches, *, steps: int, threads: int, labels=None) -> float:
    """Best seconds per training step over ``steps`` timed steps (after one warm-up);
    ``labels`` (concept -> anchor labels) for in-batch negatives."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Encoder(width=config.width)
    model.train()
    opt = _make_optimizer(model, config)
    net = torch.compile(model) if config.compile else model
    best = float("inf")
    for i in range(steps + 1):
        t = time.perf_counter()
        b = next(batches)
        loss, _, _ = step_losses(net, batches=b, config=config, device=torch.device("cpu"), labels=labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            best = min(best, time.perf_counter() - t)
    return best


def synthetic_batches(config: TrainConfig, *, channels_first: bool = False):
    g = torch.Generator().manual_seed(0)
    shape = (config.batch_size, 2 + config.negatives, 129, 128)
    x = torch.randn(*shape, generator=g)
    if channels_first:  # the same values stored [.., 128, T]: the encoder's transpose becomes contiguous
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    while True:
        yield {"artist": x}


def store_batches(config: TrainConfig, store_path: Path, split, *, num_workers: int, prefetch: int):
    from musicrep.training.loader import batch_stream
    from musicrep.training.sampling import ConceptSampler, SamplerSpec
    from musicrep.data.store import open_store

    store = open_store(store_path)
    sampler = ConceptSampler(store=store, split=split, concept="artist", mode="train", negatives=config.negatives)
    spec = SamplerSpec(store_path=str(store_path), split=split, concept="artist", mode="train", negatives=config.negatives)
    stream = batch_stream(samplers={"artist": sampler}, specs=[spec], batch_size=config.batch_size, seed=0,
                          num_workers=num_workers, prefetch=prefetch)
    for item in stream:
        yield {c: torch.as_tensor(v) for c, v in item.items()}


def build_store(root: Path) -> tuple[Path, object]:
    from musicrep.data.catalog import read_csv
    from musicrep.data.splits import artist_split
    from musicrep.data.prepare import prepare
    from musicrep.data.store import open_store
    from musicrep.testing import synth_collection

    catalog = synth_collection(root / "audio", n_artists=4, albums_per_artist=1, songs_per_album=6, seconds=10.0,
                               sr=22050, seed=0)
    store = prepare(read_csv(catalog), out_dir=root / "store", workers=2).path
    split = artist_split(catalog=open_store(store).catalog, songs_per_artist=6, n_valid=1, n_test=1, seed=0)
    return store, split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=TrainConfig.width)
    ap.add_argument("--batch", type=int, default=TrainConfig.batch_size, help="anchors per step")
    ap.add_argument("--negatives", type=int, default=TrainConfig.negatives)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (about 90 s of compiling)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("MUSICREP_QUIET", "1")
    threads = torch.get_num_threads()

    def cfg(**kw) -> TrainConfig:
        base = {"width": args.width, "batch_size": args.batch, "negatives": args.negatives, "concept": "artist"}
        base.update(kw)
        return load_config(TrainConfig, path=None, overrides=[f"{k}={v}" for k, v in base.items()])

    flops_seg = 3 * model_flops_per_segment(args.width)
    print(f"model: width {args.width}, {flops_seg / 3e6:.1f} MFLOP forward per segment, x3 for a training step")
    mm = matmul_rate()
    mm_bf16 = matmul_rate(dtype=torch.bfloat16)
    print(f"fp32 matmul: {mm / 1e9:.1f} GFLOP/s ({threads} threads); bf16 matmul: {mm_bf16 / 1e9:.1f} GFLOP/s")

    results = []

    def report(name: str, config: TrainConfig, batches, n_threads: int = threads) -> dict:
        # The reference is re-measured beside each variant: on a shared machine the
        # load changes from one minute to the next, and the ratio should not.
        torch.set_num_threads(threads)
        mm_now = matmul_rate(seconds=1.0)
        sec = time_steps(config, batches, steps=args.steps, threads=n_threads)
        segs = config.batch_size * (2 + config.negatives) / sec
        frac = segs * flops_seg / mm_now
        row = {"variant": name, "batch": config.batch_size, "threads": n_threads, "amp_bf16": config.amp,
               "seconds_per_step": round(sec, 4), "segments_per_s": round(segs, 1),
               "fp32_matmul_flops_now": mm_now, "fraction_of_fp32_matmul": round(frac, 3)}
        results.append(row)
        print(f"  {name:34s} {segs:8.1f} segments/s  {100 * frac:5.1f}% of fp32 matmul"
              f" ({mm_now / 1e9:.0f} GFLOP/s now, {sec:.3f} s/step)")
        return row

    default = cfg()
    report("fp32, store layout [B,T,128]", default, synthetic_batches(default))
    report("fp32, contiguous [B,128,T]", default, synthetic_batches(default, channels_first=True))
    report("bf16 autocast", cfg(amp=True), synthetic_batches(cfg(amp=True)))
    for b in (args.batch // 2, args.batch * 2):
        report(f"fp32, batch {b}", cfg(batch_size=b), synthetic_batches(cfg(batch_size=b)))
    if args.compile:
        report("torch.compile, fp32", cfg(compile=True), synthetic_batches(default))
    if threads > 1:
        report("fp32, 1 thread", default, synthetic_batches(default), n_threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        store, split = build_store(Path(tmp))
        loader = store_batches(default, store, split, num_workers=0, prefetch=0)
        next(loader)
        t = time.perf_counter()
        for _ in range(5):
            next(loader)
        loader_rate = 5 * default.batch_size * (2 + default.negatives) / (time.perf_counter() - t)
        loader.close()
        print(f"  {'loader alone (one thread)':34s} {loader_rate:8.1f} segments/s")
        report("store, inline loading", default, store_batches(default, store, split, num_workers=0, prefetch=0))
        report("store, 1 worker process", default, store_batches(default, store, split, num_workers=1, prefetch=2))
        final = report("store, prefetch thread (default)", default,
                       store_batches(default, store, split, num_workers=0, prefetch=2))
    torch.set_num_threads(threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": threads,
                    "torch": torch.__version__, "python": sys.version.split()[0]},
        "width": args.width, "negatives": args.negatives, "model_flops_per_training_segment": flops_seg,
        "fp32_matmul_flops": mm, "bf16_matmul_flops": mm_bf16, "variants": results,
        "loader_segments_per_s": round(loader_rate, 1),
        "headline": final, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n")
    print(f"wrote {out}")
    print(f"train: {final['segments_per_s']:.0f} segments/s, {100 * final['fraction_of_fp32_matmul']:.0f}% of fp32 matmul rate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
