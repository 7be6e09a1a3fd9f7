#!/usr/bin/env python
"""Training throughput of layerlth's loop against a plain PyTorch loop, side by side.

  python benchmarks/throughput.py --quick      # resnet20/32/56, 3 repetitions of 5 steps (~4 min on 2 cores)
  python benchmarks/throughput.py              # 5 repetitions of 20 steps
  python benchmarks/throughput.py --compile    # ... and the default path under torch.compile (+25-50 s per arch)

Both loops train the same model from the same initial weights on the same CIFAR images with the
same optimizer (the paper recipe's SGD, batch 128), with the same augmentation (pad-4 random crop,
horizontal flip, per-channel normalisation):
  plain     a torch DataLoader (2 workers, as in PyTorch's CIFAR tutorial) over PIL images with
            torchvision transforms, one step per batch;
  layerlth  layerlth.training.loop.train on device-resident uint8 data, batches made by tensor ops.
layerlth runs in fp32, on its default fast path for this device (layerlth.training.fastpath: channels_last
and/or bf16 autocast where they pay) and with bf16 autocast + channels_last forced on; with --compile,
also its default path through torch.compile (inductor). Only training steps are timed; every variant
is warmed up first (compilation included). The table gives images/s and, per repetition, the ratio to the plain
fp32 loop measured in the same repetition: median (min-max).
"""

import copy
import itertools
import statistics
import time

import common
import torch
import torch.nn.functional as F

from layerlth import build_for_images
from layerlth.data import load_dataset
from layerlth.foundations._torchvision import torchvision
from layerlth.foundations.recipes import get_recipe
from layerlth.sweep import estimate
from layerlth.training import fastpath
from layerlth.training.loop import autocast

BATCH = 128


class PilImages(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image through the transforms."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x.permute(0, 2, 3, 1).numpy(), y.tolist(), transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def plain_loader(data, device, workers=2):
    mean, std = (v / 255 for v in data.channel_stats)
    T = torchvision.transforms
    transform = T.Compose([T.RandomCrop(data.image_size[-1], padding=data.pad), T.RandomHorizontalFlip(),
                           T.ToTensor(), T.Normalize(mean.tolist(), std.tolist())])
    dataset = PilImages(data.train_x, data.train_y, transform)
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0,
                                       drop_last=True, pin_memory=device.type == "cuda")


def plain_variant(model, loader, steps, fast, device):
    """A training loop as a new user writes it."""
    layout = torch.channels_last if fast.channels_last else torch.contiguous_format
    model = copy.deepcopy(model).to(device, memory_format=layout)
    optimizer = get_recipe("paper").optimizer(model)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))

    def run():
        model.train()
        started = time.perf_counter()
        for inputs, labels in itertools.islice(batches, steps):
            inputs = inputs.to(device, non_blocking=True).contiguous(memory_format=layout)
            labels = labels.to(device, non_blocking=True)
            with autocast(device, fast.amp):
                loss = F.cross_entropy(model(inputs).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        loss.item()  # waits for the device
        return steps * BATCH, time.perf_counter() - started

    return run


def measure(arch, data, loader, steps, repeats, device, compiled):
    torch.manual_seed(0)
    model = build_for_images(arch, data.num_classes, data.image_size).to(device)
    paths = {"fp32": fastpath.FastPath(False, False), "fast": fastpath.choose(device),
             "bf16": fastpath.FastPath(True, True)}
    variants = {"plain fp32": plain_variant(model, loader, steps, paths["fp32"], device)}
    for name, path in paths.items():
        variants[f"layerlth {name}"] = common.layerlth_steps(model, data, steps, path, BATCH)
    if compiled:
        variants["layerlth compiled"] = common.layerlth_steps(model, data, steps, paths["fast"], BATCH, torch.compile)
    common.alternate(variants, 1)  # warm-up: oneDNN and cuDNN pick their kernels on first use
    return common.alternate(variants, repeats)


def headers(compiled):
    names = ["arch", "plain fp32 img/s", "layerlth fp32 img/s", "layerlth default img/s", "layerlth bf16+CL img/s",
             "layerlth fp32 / plain", "**layerlth default / plain**", "layerlth bf16+CL / plain"]
    if compiled:
        names[5:5] = ["layerlth compiled img/s"]
        names.append("layerlth compiled / plain")
    return names


def row(arch, rates, compiled):
    """One table row of `measure`'s rates: each variant's median images/s, then its ratios to the
    plain fp32 loop of the same repetition (median, min-max)."""
    cells = [arch, *(f"{statistics.median(rates[n]):.0f}" for n in rates),
             common.summary(common.ratios(rates, "layerlth fp32", "plain fp32")),
             f"**{common.summary(common.ratios(rates, 'layerlth fast', 'plain fp32'))}**",
             common.summary(common.ratios(rates, "layerlth bf16", "plain fp32"))]
    if compiled:
        cells.append(common.summary(common.ratios(rates, "layerlth compiled", "plain fp32")))
    return cells


def main(argv=None):
    p = common.parser(__doc__, "3 repetitions of 5 steps per variant (a few minutes on 2 CPU cores)")
    p.add_argument("--archs", nargs="+", default=["resnet20", "resnet32", "resnet56"])
    p.add_argument("--steps", type=int, help="training steps per measurement (default: 5 quick, 20 full)")
    p.add_argument("--compile", action="store_true", help="also time the default path under torch.compile")
    p.add_argument("--record", action="store_true",
                   help="store layerlth's fast-path images/s per arch for the sweep's --dry-run estimate "
                        "(layerlth/sweep/measured_throughput.json, under this machine's device kind)")
    args = p.parse_args(argv)
    repeats = common.positive("--repeats", args.repeats or (3 if args.quick else 5))
    steps = common.positive("--steps", args.steps or (5 if args.quick else 20))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_dataset(args.data)
    loader = plain_loader(data, device)
    data = data.to(device)  # layerlth keeps the uint8 images on the training device
    print(f"# Training throughput, batch {BATCH}, {data.name} ({len(data.train_x)} images), {repeats} x {steps} steps")
    print(common.machine())
    fast = fastpath.choose(device)
    rows, recorded = [], {}
    for arch in args.archs:
        rates = measure(arch, data, loader, steps, repeats, device, args.compile)
        recorded[arch] = round(statistics.median(rates["layerlth fast"]), 1)
        rows.append(row(arch, rates, args.compile))
        print(f"  {arch} done", flush=True)
    print(f"\ndefault = this device's fast path ({fast.precision} + {fast.memory_format}, layerlth.training.fastpath); "
          f"bf16+CL = bf16 autocast + channels_last forced on; compiled = default under torch.compile; "
          f"ratios to the plain fp32 loop: median (min-max) over {repeats} repetitions\n")
    print(common.table(headers(args.compile), rows))
    if args.record:
        source = "benchmarks/throughput.py" + (" --quick" if args.quick else "")
        estimate.record_throughput(estimate.device_kind(device), recorded, source, fast.precision, fast.memory_format,
                                   common.today())
        print(f"\nrecorded for {estimate.device_kind(device)} in {estimate.MEASURED}")


if __name__ == "__main__":
    main()
