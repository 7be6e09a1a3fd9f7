#!/usr/bin/env python
"""One trial's training speed on each of layerlth's engines, beside the plain loop, side by side.

  python benchmarks/engines.py --quick     # resnet20, 3 epochs of the subset per variant
  python benchmarks/engines.py             # resnet20/32/56, 5 epochs per variant

Variants, each training the same net from the same weights on the same CIFAR images (paper recipe's
SGD, batch 128, pad-4 crop + flip + normalise):
  plain 2w / plain 8w  a torch DataLoader loop in fp32 (throughput.py's), 2 and 8 workers
  eager                layerlth's `train` on its default fast path, eager steps
  graph                the same with every full step a CUDA graph replay (`steps.GraphedStep`; CUDA only)
  compiled             the same, eager steps through torch.compile (timed after its compilation)
A variant trains `epochs` epochs through `train`; the first is the warm-up (kernel choice, capture,
compilation) and the images/s is the median of the others, each measured by the loop itself without
its evaluation. The plain loops run as many steps as one epoch has. Ratios to plain 8w.
"""

import copy
import statistics
import time

import common
import throughput
import torch

from layerlth import build_for_images
from layerlth.foundations.recipes import get_recipe
from layerlth.training import fastpath
from layerlth.training.loop import compile_for_training, train

BATCH = 128
ENGINES = ("eager", "graph", "compiled")


def engine_rate(model, data, engine, epochs, device):
    """Median images/s over epochs 2.. of `train` on `engine`; plus the seconds of its warm-up epoch."""
    fast = fastpath.choose(device, compile=engine == "compiled", graph=engine == "graph")
    model = copy.deepcopy(model)
    recipe = get_recipe("paper").scaled(epochs=epochs, batch_size=BATCH)
    runner, compile_seconds = model, 0.0
    if fast.compiled:
        runner, compile_seconds = compile_for_training(model, data, BATCH, fast.amp, fast.channels_last,
                                                       fast.compile_mode)
    history = train(model, data, recipe, amp=fast.amp, channels_last=fast.channels_last, runner=runner,
                    graph=fast.graphed)
    rates = [h["images_per_second"] for h in history[1:]] or [history[0]["images_per_second"]]
    return {"images_per_second": statistics.median(rates), "warmup_seconds": history[0]["epoch_seconds"],
            "compile_seconds": compile_seconds, "path": fast.path, "precision": fast.precision}


def plain_rate(model, data, workers, steps, repeats, device):
    loader = throughput.plain_loader(data, device, workers)
    run = throughput.plain_variant(model, loader, steps, fastpath.FastPath(False, False), device)
    run()  # warm-up: workers start, kernels are chosen
    rates = []
    for _ in range(repeats):
        images, seconds = run()
        rates.append(images / seconds)
    return {"images_per_second": statistics.median(rates), "workers": workers}


def measure(arch, data, epochs, device, engines=ENGINES, workers=(2, 8), on_variant=None):
    """{variant: figures} for one arch; `on_variant(name, figures)` after each (the suite saves then)."""
    torch.manual_seed(0)
    model = build_for_images(arch, data.num_classes, data.image_size).to(device)
    on_device = data.to(device)
    steps = len(data.train_x) // BATCH
    found = {}
    for count in workers:
        started = time.monotonic()
        found[f"plain {count}w"] = plain_rate(model, data, count, steps, max(1, epochs - 1), device)
        found[f"plain {count}w"]["seconds"] = round(time.monotonic() - started, 1)
        if on_variant:
            on_variant(f"plain {count}w", found[f"plain {count}w"])
    for engine in engines:
        if engine == "graph" and device.type != "cuda":
            continue  # a CUDA graph needs CUDA
        started = time.monotonic()
        found[engine] = engine_rate(model, on_device, engine, epochs, device)
        found[engine]["seconds"] = round(time.monotonic() - started, 1)
        if on_variant:
            on_variant(engine, found[engine])
    return found


HEADERS = ["arch", "variant", "path", "img/s", "/ plain 8w", "/ plain 2w", "warm-up s", "compile s"]


def rows(arch, found):
    base8 = found.get("plain 8w", {}).get("images_per_second")
    base2 = found.get("plain 2w", {}).get("images_per_second")
    lines = []
    for name, f in found.items():
        rate = f["images_per_second"]
        lines.append([arch, name, f.get("path", "DataLoader fp32"), f"{rate:.0f}",
                      f"{rate / base8:.2f}" if base8 else "", f"{rate / base2:.2f}" if base2 else "",
                      f"{f['warmup_seconds']:.1f}" if "warmup_seconds" in f else "",
                      f"{f['compile_seconds']:.1f}" if f.get("compile_seconds") else ""])
    return lines


def main(argv=None):
    from layerlth.data import load_dataset

    p = common.parser(__doc__, "resnet20 only, 3 epochs of the subset per variant")
    p.add_argument("--archs", nargs="+", help="architectures (default: resnet20 quick; resnet20/32/56 full)")
    p.add_argument("--epochs", type=int, help="epochs per variant, the first a warm-up (default 3 quick, 5 full)")
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it compiles for 30-80 s)")
    args = p.parse_args(argv)
    archs = args.archs or (["resnet20"] if args.quick else ["resnet20", "resnet32", "resnet56"])
    epochs = common.positive("--epochs", args.epochs or (3 if args.quick else 5))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_dataset(args.data)
    engines = [e for e in ENGINES if not (args.no_compile and e == "compiled")]
    print(f"# One trial's training speed per engine, batch {BATCH}, {data.name} ({len(data.train_x)} images)")
    print(common.machine())
    table = []
    for arch in archs:
        table += rows(arch, measure(arch, data, epochs, device, engines))
        print(f"  {arch} done", flush=True)
    print()
    print(common.table(HEADERS, table))


if __name__ == "__main__":
    main()
