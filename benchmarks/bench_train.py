"""Training throughput: trained segments/s and model-FLOP rate vs the machine's fp32 matmul rate.

    python benchmarks/bench_train.py [--width 256] [--batch 64] [--negatives 4] [--steps 3]
                                     [--device auto|cpu|cuda] [--out benchmarks/results/train.json]

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

On a GPU (``--device cuda``, or ``auto`` when torch sees one; results in
``results/train-cuda.json``) the references are the device's own matmul rates
(``--gpu-matmul-n``, 8192^3 by default): bf16 for the bf16-autocast variants, and
TF32 for the fp32 ones, since cuDNN runs fp32 convolutions in TF32 by default
(``torch.backends.cudnn.allow_tf32``; strict fp32 is measured and recorded too).
Each GPU variant times ``--gpu-steps`` consecutive steps between two
``torch.cuda.synchronize()`` after ``--gpu-warmup`` steps, reading the loss with
``.item()`` every step as the training loop does. Variants: fp32 and bf16 at
``--gpu-batches`` anchors (64, 256, 1024 by default) and at the paper's 15, on
batches already on the device; then the data paths at ``--batch`` anchors from a
real memory-mapped store: frames resident on the device (what ``musicrep train``
picks on a GPU when they fit), pinned batches from worker processes, and the
prefetch thread.
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


def matmul_rate(*, n: int = 2048, seconds: float = 2.0, dtype=torch.float32, device: str = "cpu") -> float:
    """Best GEMM rate (default fp32) in FLOP/s over ~``seconds``."""
    if device != "cpu":
        return gpu_matmul_rate(n=n, seconds=seconds, dtype=dtype, device=device)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def gpu_matmul_rate(*, n: int, seconds: float, dtype, device: str, tf32: bool = False, reps: int = 10) -> float:
    """Best GEMM rate in FLOP/s on a GPU: blocks of ``reps`` n^3 products between two
    synchronizes, for ~``seconds``. ``tf32`` lets fp32 products run in TF32."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, dtype=dtype, device=device, generator=g)
        b = torch.randn(n, n, dtype=dtype, device=device, generator=g)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        best, t_end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            torch.cuda.synchronize()
            best = max(best, reps * 2 * n**3 / (time.perf_counter() - t))
        del a, b
        return best
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


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


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps_gpu(config: TrainConfig, batches, *, steps: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per training step on a GPU: ``steps`` consecutive steps (after
    ``warmup``) between two ``torch.cuda.synchronize()``, each reading its loss with
    ``.item()`` as :func:`musicrep.training.steps.train_epoch` does (one sync a step)."""
    torch.manual_seed(0)
    model = Encoder(width=config.width).to(device)
    model.train()
    opt = _make_optimizer(model, config)  # fused SGD: the model is on the GPU
    net = torch.compile(model) if config.compile else model

    def step() -> None:
        b = next(batches)
        loss, _, _ = step_losses(net, batches=b, config=config, device=device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()

    for _ in range(warmup):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    sec = (time.perf_counter() - t) / steps
    del model, opt, net
    return sec


def synthetic_batches(config: TrainConfig, *, channels_first: bool = False, device: str = "cpu"):
    g = torch.Generator().manual_seed(0)
    shape = (config.batch_size, 2 + config.negatives, 129, 128)
    x = torch.randn(*shape, generator=g).to(device)
    if channels_first:  # the same values stored [.., 128, T]: the encoder's transpose becomes contiguous
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    while True:
        yield {"artist": x}


def store_batches(config: TrainConfig, store_path: Path, split, *, num_workers: int, prefetch: int,
                  pin_memory: bool = False):
    from musicrep.training.loader import batch_stream
    from musicrep.training.sampling import ConceptSampler, SamplerSpec
    from musicrep.data.store import open_store

    store = open_store(store_path)
    sampler = ConceptSampler(store=store, split=split, concept="artist", mode="train", negatives=config.negatives)
    spec = SamplerSpec(store_path=str(store_path), split=split, concept="artist", mode="train", negatives=config.negatives)
    stream = batch_stream(samplers={"artist": sampler}, specs=[spec], batch_size=config.batch_size, seed=0,
                          num_workers=num_workers, prefetch=prefetch, pin_memory=pin_memory)
    for item in stream:
        yield {c: torch.as_tensor(v) for c, v in item.items()}


def resident_batches(config: TrainConfig, store_path: Path, split, *, device: torch.device):
    """The batches of :func:`store_batches`, gathered on ``device`` from frames kept there."""
    from musicrep.data.store import open_store
    from musicrep.training.resident import ResidentFrames, resident_stream
    from musicrep.training.sampling import ConceptSampler

    store = open_store(store_path)
    sampler = ConceptSampler(store=store, split=split, concept="artist", mode="train", negatives=config.negatives)
    frames = ResidentFrames(store=store, track_ids=sampler.track_ids, device=device)
    return resident_stream(samplers={"artist": sampler}, frames=frames, batch_size=config.batch_size, seed=0), frames


def loader_rate(batches, *, segments_per_batch: int, n: int = 5, device: torch.device | None = None) -> float:
    """Segments/s of a batch stream alone (no model); on a GPU each batch is copied
    there, as :func:`musicrep.training.steps.step_losses` would, and synchronized."""
    def one():
        b = next(batches)
        if device is not None:
            for v in b.values():
                v.to(device, non_blocking=True)
            _sync(device)

    one()
    t = time.perf_counter()
    for _ in range(n):
        one()
    return n * segments_per_batch / (time.perf_counter() - t)


def build_store(root: Path, *, n_artists: int = 4, songs: int = 6, seconds: float = 10.0,
                workers: int = 2) -> tuple[Path, object]:
    from musicrep.data.catalog import read_csv
    from musicrep.data.splits import artist_split
    from musicrep.data.prepare import prepare
    from musicrep.data.store import open_store
    from musicrep.testing import synth_collection

    catalog = synth_collection(root / "audio", n_artists=n_artists, albums_per_artist=1, songs_per_album=songs,
                               seconds=seconds, sr=22050, seed=0)
    store = prepare(read_csv(catalog), out_dir=root / "store", workers=workers).path
    split = artist_split(catalog=open_store(store).catalog, songs_per_artist=songs, n_valid=1, n_test=1, seed=0)
    return store, split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=TrainConfig.width)
    ap.add_argument("--batch", type=int, default=None,
                    help=f"anchors per step (default {TrainConfig.batch_size}; on a GPU 256, the anchors of the "
                         "contiguous-layout and data-path variants)")
    ap.add_argument("--negatives", type=int, default=TrainConfig.negatives)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant (on a GPU: see --gpu-steps)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (about 90 s of compiling)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: cuda when torch sees one (default)")
    ap.add_argument("--out", default=None,
                    help="default benchmarks/results/train.json on a CPU, train-cuda.json on a GPU")
    g = ap.add_argument_group("GPU variants")
    g.add_argument("--gpu-batches", default="64,256,1024", help="anchors per step of the fp32 / bf16 variants")
    g.add_argument("--gpu-steps", type=int, default=20, help="timed consecutive steps per variant")
    g.add_argument("--gpu-warmup", type=int, default=5, help="untimed steps before them")
    g.add_argument("--gpu-matmul-n", type=int, default=8192, help="n of the n^3 reference matmuls")
    g.add_argument("--gpu-workers", default="4,8", help="worker-process counts of the pinned-loader variants")
    g.add_argument("--store-artists", type=int, default=16, help="artists of the store the data paths read")
    g.add_argument("--store-songs", type=int, default=10, help="songs per artist of that store")
    g.add_argument("--store-seconds", type=float, default=20.0, help="seconds per song of that store")
    g.add_argument("--gpu-variants", action="store_true",
                   help="run the GPU variants even on a CPU (to check this script where there is no GPU)")
    args = ap.parse_args(argv)
    os.environ.setdefault("MUSICREP_QUIET", "1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    results_dir = Path(__file__).parent / "results"
    if args.out is None:
        args.out = str(results_dir / ("train.json" if device.type == "cpu" else f"train-{device.type}.json"))
    gpu = device.type == "cuda" or args.gpu_variants
    if args.batch is None:
        args.batch = 256 if gpu else TrainConfig.batch_size
    return main_gpu(args, device=device) if gpu else main_cpu(args)


def main_cpu(args: argparse.Namespace) -> int:
    """The CPU variants (threads, layouts, loaders), against the CPU's fp32 matmul rate."""
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



def main_gpu(args: argparse.Namespace, *, device: torch.device) -> int:
    """The GPU variants, against the device's bf16 and TF32 matmul rates; the json is
    rewritten after every variant, so a run cut short keeps what it measured."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cuda = device.type == "cuda"
    segs_of = lambda c: c.batch_size * (2 + c.negatives)  # noqa: E731

    def cfg(**kw) -> TrainConfig:
        base = {"width": args.width, "batch_size": args.batch, "negatives": args.negatives, "concept": "artist"}
        base.update(kw)
        return load_config(TrainConfig, path=None, overrides=[f"{k}={v}" for k, v in base.items()])

    flops_seg = 3 * model_flops_per_segment(args.width)
    machine = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
               "torch": torch.__version__, "python": sys.version.split()[0], "device": str(device)}
    if cuda:
        props = torch.cuda.get_device_properties(device)
        machine.update({"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                        "multiprocessors": props.multi_processor_count,
                        "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                        "cudnn": torch.backends.cudnn.version(),
                        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                        "cudnn_benchmark": torch.backends.cudnn.benchmark})
    print(f"device: {machine.get('gpu', 'cpu')} (torch {torch.__version__}, cuda {machine.get('cuda')})")
    print(f"model: width {args.width}, {flops_seg / 3e6:.1f} MFLOP forward per segment, x3 for a training step")
    n = args.gpu_matmul_n
    mm = {"bf16": matmul_rate(n=n, dtype=torch.bfloat16, device=device.type),
          "fp32": matmul_rate(n=n, dtype=torch.float32, device=device.type)}
    mm["tf32"] = gpu_matmul_rate(n=n, seconds=2.0, dtype=torch.float32, device=device.type, tf32=True) if cuda \
        else mm["fp32"]
    print(f"matmul {n}^3: bf16 {mm['bf16'] / 1e12:.1f} TFLOP/s, tf32 {mm['tf32'] / 1e12:.1f} TFLOP/s, "
          f"fp32 {mm['fp32'] / 1e12:.1f} TFLOP/s")

    doc = {"machine": machine, "width": args.width, "negatives": args.negatives,
           "model_flops_per_training_segment": flops_seg, "matmul_n": n,
           "bf16_matmul_flops": mm["bf16"], "tf32_matmul_flops": mm["tf32"], "fp32_matmul_flops": mm["fp32"],
           "reference": "bf16 variants: bf16 matmul; fp32 variants: tf32 matmul (cuDNN's fp32 convolutions "
                        "run in TF32 by default)",
           "timing": f"{args.gpu_steps} consecutive steps after {args.gpu_warmup} warm-up steps, between two "
                     "synchronizes, loss.item() every step",
           "variants": [], "loaders_alone": [], "headline": None, "complete": False}

    def save() -> None:
        doc["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out.write_text(json.dumps(doc, indent=2) + "\n")

    save()

    def report(name: str, config: TrainConfig, batches) -> dict:
        sec = time_steps_gpu(config, batches, steps=args.gpu_steps, warmup=args.gpu_warmup, device=device)
        if hasattr(batches, "close"):
            batches.close()
        segs = segs_of(config) / sec
        ref = "bf16" if config.amp else "tf32"
        mfu = segs * flops_seg / mm[ref]
        row = {"variant": name, "batch": config.batch_size, "amp_bf16": config.amp,
               "seconds_per_step": round(sec, 6), "segments_per_s": round(segs, 1),
               "model_tflops_per_s": round(segs * flops_seg / 1e12, 2), "reference": f"{ref} matmul",
               "reference_matmul_flops": mm[ref], "mfu": round(mfu, 4),
               "fraction_of_fp32_matmul": round(segs * flops_seg / mm["fp32"], 4)}
        if cuda:
            row["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.empty_cache()
        doc["variants"].append(row)
        save()
        print(f"  {name:40s} {segs:10.1f} segments/s  {100 * mfu:5.1f}% of {ref} matmul"
              f" ({mm[ref] / 1e12:.0f} TFLOP/s, {1e3 * sec:.2f} ms/step)")
        return row

    def alone(name: str, rate: float) -> None:
        doc["loaders_alone"].append({"loader": name, "segments_per_s": round(rate, 1)})
        save()
        print(f"  {name:40s} {rate:10.1f} segments/s (no model)")

    batches = sorted({int(b) for b in args.gpu_batches.split(",") if b})
    paper = TrainConfig.batch_size
    for b in batches + [paper]:
        tag = " (the paper's)" if b == paper else ""
        for amp in (False, True):
            c = cfg(batch_size=b, amp=amp)
            report(f"{'bf16 autocast' if amp else 'fp32'}, batch {b}{tag}", c, synthetic_batches(c, device=device))
    default = cfg()
    report(f"fp32, contiguous [B,128,T], batch {args.batch}", default,
           synthetic_batches(default, channels_first=True, device=device))
    if args.compile:
        report(f"torch.compile, fp32, batch {args.batch}", cfg(compile=True), synthetic_batches(default, device=device))
        report(f"torch.compile, bf16, batch {args.batch}", cfg(compile=True, amp=True),
               synthetic_batches(default, device=device))

    workers = [int(k) for k in args.gpu_workers.split(",") if k]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store, split = build_store(Path(tmp), n_artists=args.store_artists, songs=args.store_songs,
                                   seconds=args.store_seconds, workers=max(2, min(8, (os.cpu_count() or 2) - 1)))
        from musicrep.data.store import open_store
        n_tracks = len(open_store(store).catalog)
        doc["store"] = {"artists": args.store_artists, "songs_per_artist": args.store_songs,
                        "seconds_per_song": args.store_seconds, "tracks": n_tracks,
                        "train_tracks": len(split.track_ids("train")),
                        "build_seconds": round(time.perf_counter() - t, 1)}
        print(f"store: {n_tracks} tracks of {args.store_seconds:g} s, built in {time.perf_counter() - t:.1f} s")
        per = segs_of(default)
        s1 = store_batches(default, store, split, num_workers=0, prefetch=0)
        alone("inline, one thread", loader_rate(s1, segments_per_batch=per,
                                                                  device=device if cuda else None))
        s1.close()
        for k in workers:
            sk = store_batches(default, store, split, num_workers=k, prefetch=2, pin_memory=cuda)
            alone(f"{k} worker process{'es' if k > 1 else ''}, pinned", loader_rate(sk, segments_per_batch=per, n=20,
                                                               device=device if cuda else None))
            sk.close()
        res, frames = resident_batches(default, store, split, device=device)
        doc["store"]["resident_gib"] = round(frames.frames.numel() * 2 / 2**30, 3)
        alone("resident frames, gathered on the device", loader_rate(res, segments_per_batch=per, n=20, device=device))
        del res, frames

        rows = {}
        for amp in (False, True):
            c = cfg(amp=amp)
            kind = "bf16" if amp else "fp32"
            res, frames = resident_batches(c, store, split, device=device)
            rows[f"resident {kind}"] = report(f"store, resident frames, {kind}", c, res)
            del res, frames
            for k in workers:
                report(f"store, {k} worker{'s' if k > 1 else ''} pinned, {kind}", c,
                       store_batches(c, store, split, num_workers=k, prefetch=2, pin_memory=cuda))
        report("store, prefetch thread, fp32", default, store_batches(default, store, split, num_workers=0, prefetch=2))
    final = rows["resident fp32"]
    doc["headline"], doc["complete"] = final, True
    save()
    print(f"wrote {out}")
    print(f"train: {final['segments_per_s']:.0f} segments/s, {100 * final['mfu']:.0f}% of tf32 matmul rate "
          f"(resident frames, fp32, batch {final['batch']}); bf16: {rows['resident bf16']['segments_per_s']:.0f} "
          f"segments/s, {100 * rows['resident bf16']['mfu']:.0f}% of bf16 matmul rate")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
