#!/usr/bin/env python
"""Trials per hour when 1, 2, 4 or 8 trials share one GPU, as `--gpus-per-trial 1, 0.5, 0.25, 0.125` packs them.

  python benchmarks/gpu_packing.py --quick   # resnet32, fast path and fp32, eager, 1/2/4/8 at once
  python benchmarks/gpu_packing.py           # resnet32 and resnet56, fast path on/off, torch.compile on/off

Each trial of a packed sweep is its own process on the GPU, so k trials sharing it are measured as
k processes started together: each builds its net, puts the CIFAR images on the GPU, warms up
(compiling, with --compile), waits for the others, then trains `steps` steps through layerlth's loop,
`repeats` times. From the images/s of all k together:

  trials/hour      = k x (median images/s per process) x 3600 / (images one trial trains on:
                     training set x the paper recipe's 200 epochs)
  vs one per GPU   = trials/hour at k / trials/hour at k = 1 (same settings, same run)
  peak memory      = torch.cuda.max_memory_allocated of one process (what a trial must fit in)

Needs a CUDA GPU; on a machine without one it says so and exits.
"""

import statistics
import sys

import common
import torch
import torch.multiprocessing as mp

from layerlth import build_for_images
from layerlth.data import load_dataset
from layerlth.foundations.recipes import get_recipe
from layerlth.training import fastpath

BATCH = 128


def worker(settings, barrier, results):
    arch, fast, compiled, steps, repeats, data_name = settings
    torch.manual_seed(0)
    data = load_dataset(data_name).to("cuda")
    model = build_for_images(arch, data.num_classes, data.image_size).cuda()
    run = common.layerlth_steps(model, data, steps, fast, BATCH, prepare=torch.compile if compiled else None)
    run()  # warm-up: cuDNN autotuning, compilation
    torch.cuda.reset_peak_memory_stats()
    barrier.wait(timeout=900)  # a sibling that died breaks the barrier instead of hanging
    rates = [items / seconds for items, seconds in (run() for _ in range(repeats))]
    results.put((statistics.median(rates), torch.cuda.max_memory_allocated()))


def packed(k, settings):
    """Median images/s of each of k processes sharing the GPU, and their peak memory."""
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(k), context.Queue()
    processes = [context.Process(target=worker, args=(settings, barrier, results)) for _ in range(k)]
    for process in processes:
        process.start()
    try:
        measured = [results.get(timeout=1800) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        raise SystemExit(f"packed trials failed with exit codes {failed} ({k} at once, {settings})")
    return [rate for rate, _ in measured], max(memory for _, memory in measured)


HEADERS = ["arch", "precision + layout", "torch.compile", "trials at once", "img/s per trial", "trials/hour",
           "**vs one per GPU**", "peak memory per trial"]


def measure(arch, path, compiled, packing, steps, repeats, data, images_per_trial):
    """k = 1 (the reference), then each k of `packing`: yields one dict per k, as it is measured:
    {"k", "rates" (images/s of each process), "peak_memory_bytes", "trials_per_hour", "vs_one", "row"}."""
    alone = None
    for k in sorted({1, *packing}):
        rates, memory = packed(k, (arch, path, compiled, steps, repeats, data))
        per_hour = k * statistics.median(rates) * 3600 / images_per_trial
        alone = alone or per_hour
        yield {"k": k, "rates": rates, "peak_memory_bytes": memory, "trials_per_hour": per_hour,
               "vs_one": per_hour / alone,
               "row": [arch, f"{path.precision} + {path.memory_format}", "on" if compiled else "off", k,
                       common.summary(rates, 0), f"{per_hour:.2f}", f"**{per_hour / alone:.2f}**",
                       f"{memory / 2**20:.0f} MiB"]}


def main(argv=None):
    p = common.parser(__doc__, "resnet32 only, eager only, 3 repetitions of 20 steps")
    p.add_argument("--packing", nargs="+", type=int, default=[1, 2, 4, 8], help="trials sharing the GPU")
    p.add_argument("--steps", type=int, help="training steps per measurement (default: 20 quick, 50 full)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_packing.py needs a CUDA GPU; none here.", file=sys.stderr)
        return 1
    repeats = common.positive("--repeats", args.repeats or 3)
    steps = common.positive("--steps", args.steps or (20 if args.quick else 50))
    images_per_trial = len(load_dataset(args.data).train_x) * get_recipe("paper").epochs
    fast, fp32 = fastpath.choose("cuda"), fastpath.FastPath(False, False)
    archs = ["resnet32"] if args.quick else ["resnet32", "resnet56"]
    compiles = [False] if args.quick else [False, True]
    print(f"# GPU packing: trials/hour with k trials sharing one GPU, batch {BATCH}, {args.data}, "
          f"{repeats} x {steps} steps per process")
    print(common.machine())
    rows = []
    for arch in archs:
        for path in (fast, fp32):
            for compiled in compiles:
                for found in measure(arch, path, compiled, args.packing, steps, repeats, args.data, images_per_trial):
                    rows.append(found["row"])
                    print(f"  {arch} {path.precision} compile={compiled} k={found['k']} done", flush=True)
    print(f"\nimg/s per trial: median (min-max) over the k processes; a trial = {images_per_trial:,} images\n")
    print(common.table(HEADERS, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
