"""What a sweep will cost before it runs: MACs x training images x epochs, turned into hours by the
training throughput `benchmarks/throughput.py` measured per architecture and device kind
(`measured_throughput.json` beside this file); an assumed TFLOP/s only where nothing was measured.

A device kind's entry may also say how many trials share one device best (`packing`, measured by
`benchmarks/gpu_suite.py` with `packs.py`'s packs of k trials in one process): {arch:
{"trials_per_device": k, "speedup": trials/hour at k / trials/hour at 1, ...}}. The estimate then
also gives the hours with that many trials per device (`--trials-per-gpu k`, which `auto` picks),
each architecture at the measured one closest in MACs."""

import functools
from pathlib import Path

import numpy as np

from layerlth.foundations.dataset_identity import is_stream
from layerlth.foundations.measured import MEASURED, cpu_model, device_kind, measured_throughput  # noqa: F401
from layerlth.foundations.recipes import training_recipe
from layerlth.measure.costs import count_macs
from layerlth.models import build_for_images, build_model, removable_blocks, remove_blocks
from layerlth.tickets.procedures import removal_rule

# training images and image shape of the built-in datasets, and their test images
SHAPES = {"cifar10": (50000, (3, 32, 32)), "cifar100": (50000, (3, 32, 32)), "digits": (1437, (1, 8, 8)),
          "synthetic": (512, (3, 32, 32))}
TEST_IMAGES = {"cifar10": 10000, "cifar100": 10000, "digits": 360, "synthetic": 128}
# a training step is ~3 passes (forward, two backward) of 2 FLOPs per MAC; evaluating an image is
# one of them, so each epoch's test images count as a third of a trained image each
FLOPS_PER_MAC_TRAINED = 6
EVALUATED_PER_TRAINED = 1 / 3


def dataset_shape(name, image_size=None):
    """(training images, (C, H, W)): a directory that streams is counted from its listing."""
    if name in SHAPES:
        return SHAPES[name]
    if is_stream(name):
        from layerlth.data import image_shape
        from layerlth.data.streams import open_source

        return len(open_source(name).items["train"]), image_shape(name, image_size)
    with np.load(Path(name), mmap_mode="r") as arrays:
        return len(arrays["train_y"]), tuple(arrays["train_x"].shape[1:])


def test_images(name):
    """How many images a trial evaluates after each epoch."""
    if name in TEST_IMAGES:
        return TEST_IMAGES[name]
    if is_stream(name):
        from layerlth.data.streams import open_source

        return len(open_source(name).items["val"])
    with np.load(Path(name), mmap_mode="r") as arrays:
        return len(arrays["test_y"])


def trial_cost(config):
    """(ticket MACs per image, training and evaluation FLOPs). Blocks of one net cost about the same, so the
    ticket's MACs are estimated by removing the first p removable blocks."""
    macs, images = trial_macs_and_images(config)
    return macs, FLOPS_PER_MAC_TRAINED * macs * images


def trial_macs_and_images(config):
    """(ticket MACs per image, images the trial trains on: set size x epochs, plus each epoch's
    evaluation as a third of a trained image per test image)."""
    images, shape = dataset_shape(config.dataset, config.image_size)
    if config.train_subset:
        images = min(images, config.train_subset)
    removed = config.p if config.kind != "dense" else 0
    macs = ticket_macs(config.arch, shape, config.shortcut, removal_rule(config), removed)
    recipe = training_recipe(config)
    first = config.rewind if config.kind == "after_training" and not config.reinit else 0
    # a progressively resized epoch (smaller crops) counts as (crop / size)^2 of one: MACs follow pixels
    size = shape[-1]
    epochs = sum((recipe.train_size(e, size) / size) ** 2 for e in range(first, recipe.epochs))
    evaluated = test_images(config.dataset) * (recipe.epochs - first) * EVALUATED_PER_TRAINED
    return macs, round(images * epochs + evaluated)


@functools.lru_cache(maxsize=None)
def ticket_macs(arch, shape, shortcut, rule, p):
    """MACs per image of `arch` without its first p removable blocks under `rule`: counted once per
    net (a grid repeats each over seeds, criteria and rewind points; a count takes about a second)."""
    model = build_for_images(arch, 10, shape, shortcut)
    if p:
        model = remove_blocks(model, removable_blocks(model, rule)[:p])
    return count_macs(model, shape)


@functools.lru_cache(maxsize=None)
def arch_macs(arch):
    """MACs per image of the full `arch` at its default input (built once per architecture)."""
    return count_macs(build_model(arch))


class Throughput:
    """Training MACs per second of each architecture on one kind of device, from measured images/s;
    an architecture not measured borrows the rate of the measured one closest in MACs."""

    def __init__(self, kind, entry):
        self.kind, self.entry = kind, entry
        self.rates = {arch: ips * arch_macs(arch) for arch, ips in entry["images_per_second"].items()}
        self.packing = {arch: p for arch, p in entry.get("packing", {}).items() if p.get("trials_per_device", 1) >= 1}

    def seconds(self, arch, macs, images):
        return macs * images / self.rate(arch)[0]

    def rate(self, arch):
        """(MACs/s, the architecture it was measured on)."""
        if arch in self.rates:
            return self.rates[arch], arch
        closest = nearest(self.rates, arch)
        return self.rates[closest], closest

    def packed(self, arch):
        """(trials per device, their trials/hour over one trial's, the architecture measured);
        (1, 1.0, None) where no packing was measured."""
        if not self.packing:
            return 1, 1.0, None
        measured = arch if arch in self.packing else nearest(self.packing, arch)
        best = self.packing[measured]
        return int(best["trials_per_device"]), float(best["speedup"]), measured

    def hours(self, costs):
        """(device-hours one trial at a time, device-hours packed as measured) of (arch, MACs,
        images) trials; the two are equal where no packing was measured."""
        seconds = [(arch, self.seconds(arch, macs, images)) for arch, macs, images in costs]
        return (sum(s for _, s in seconds) / 3600, sum(s / self.packed(arch)[1] for arch, s in seconds) / 3600)

    def describe_packing(self, archs):
        """How the packed hours were had, or None without a packing measurement."""
        if not self.packing:
            return None
        parts = []
        for arch in sorted(self.packing):
            k, speedup, _ = self.packed(arch)
            parts.append(f"{arch}: {k} per device (--trials-per-gpu {k}), {speedup:.2f}x the trials/hour of one")
        borrowed = {a: self.packed(a)[2] for a in sorted(archs) if a not in self.packing}
        text = "; ".join(parts)
        if borrowed:
            text += "; " + ", ".join(f"{a} as {b}" for a, b in borrowed.items())
        return f"{text} (measured by {self.entry['packing_source']} on {self.entry['packing_date']})"

    def describe(self, archs):
        measured = sorted(a for a in archs if a in self.rates)
        borrowed = {a: self.rate(a)[1] for a in sorted(archs) if a not in self.rates}
        e = self.entry
        text = (f"{self.kind} at the training throughput measured by {e['source']} on {e['date']} "
                f"({e['precision']} + {e['memory_format']}; measured for {', '.join(measured) or 'none of these'}")
        if borrowed:
            text += "; " + ", ".join(f"{a} at {b}'s MACs/s" for a, b in borrowed.items())
        return text + ")"


def nearest(measured, arch):
    """The architecture of `measured` closest to `arch` in MACs per image."""
    return min(measured, key=lambda a: abs(np.log(arch_macs(a) / arch_macs(arch))))


def dry_run_table(entries, tflops, kinds=None, path=MEASURED):
    """The trials with their MACs and training FLOPs, then the sweep's hours on every device kind
    with a measured throughput (or on `kinds`), and at the assumed TFLOP/s."""
    lines = [f"{'#':>4}  {'kind':<15}{'arch':<10}{'criterion':<10}{'p':>3}{'rewind':>7}{'seed':>5}{'epochs':>7}"
             f"{'MACs':>9}{'PFLOP':>9}"]
    costs = []
    for i, (label, config) in enumerate(entries, 1):
        macs, images = trial_macs_and_images(config)
        costs.append((config.arch, macs, images))
        rewind = config.rewind if config.kind == "after_training" else ""
        lines.append(f"{i:>4}  {config.kind:<15}{config.arch:<10}{config.criterion if config.p else '-':<10}"
                     f"{config.p:>3}{rewind!s:>7}{config.seed:>5}{training_recipe(config).epochs:>7}"
                     f"{macs / 1e6:>8.1f}M{FLOPS_PER_MAC_TRAINED * macs * images / 1e15:>9.2f}")
    total = sum(FLOPS_PER_MAC_TRAINED * macs * images for _, macs, images in costs)
    lines.append(f"{len(entries)} trials, {total / 1e15:.1f} PFLOP of training and evaluation, one trial at a time per device:")
    measured = measured_throughput(path)
    archs = {arch for arch, _, _ in costs}
    for kind in kinds or measured:
        if kind not in measured:
            lines.append(f"  {kind}: no measured throughput (measured: {sorted(measured)})")
            continue
        rate = Throughput(kind, measured[kind])
        hours, packed = rate.hours(costs)
        lines.append(f"  about {hours:,.1f} hours on {rate.describe(archs)}")
        if rate.packing:
            lines.append(f"  about {packed:,.1f} hours on {kind} with trials packed as measured: "
                         f"{rate.describe_packing(archs)}")
    hours = total / (tflops * 1e12) / 3600
    lines.append(f"  about {hours:.1f} GPU-hours at an assumed {tflops:g} TFLOP/s sustained (not measured; "
                 f"set with --assumed-tflops)")
    return "\n".join(lines)


def sweep_hours(entries, kind, path=MEASURED):
    """(device-hours one trial at a time, device-hours packed) of `entries` on `kind` at its
    measured throughput; None where `kind` has none."""
    measured = measured_throughput(path)
    if kind not in measured:
        return None
    costs = [(config.arch, *trial_macs_and_images(config)) for _, config in entries]
    return Throughput(kind, measured[kind]).hours(costs)


def record_throughput(kind, images_per_second, source, precision, memory_format, date, path=MEASURED,
                      packing=None, fusion=None):
    """Add or replace one device kind's measured images/s per architecture and, when given, how
    many trials share one of its devices best ({arch: {"trials_per_device", "speedup", ...}}) and
    whether fused packs were measured faster there ({"faster": bool, ...}: `fuse: auto` reads it)."""
    from layerlth.foundations.atomic import write_json_atomic

    measured = measured_throughput(path)
    measured[kind] = {"images_per_second": images_per_second, "source": source, "date": date,
                      "precision": precision, "memory_format": memory_format}
    if packing:
        for arch, best in packing.items():
            if not (best["trials_per_device"] >= 1 and best["speedup"] > 0):
                raise ValueError(f"packing of {arch}: trials_per_device must be >= 1 and speedup > 0, got {best}")
        measured[kind] |= {"packing": packing, "packing_source": source, "packing_date": date}
    if fusion:
        measured[kind] |= {"fusion": fusion | {"date": date}}
    write_json_atomic(dict(sorted(measured.items())), path)
