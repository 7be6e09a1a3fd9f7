"""What a sweep will cost before it runs: MACs x training images x epochs, and GPU-hours at an
assumed sustained throughput."""

from pathlib import Path

import numpy as np

from layerlth.measure import count_macs
from layerlth.models import build_model, removable_blocks, remove_blocks
from layerlth.tickets import removal_rule
from layerlth.trial import training_recipe

# training images and image shape of the built-in datasets
SHAPES = {"cifar10": (50000, (3, 32, 32)), "cifar100": (50000, (3, 32, 32)), "digits": (1437, (1, 8, 8)),
          "synthetic": (512, (3, 32, 32))}
# a training step is ~3 passes (forward, two backward) of 2 FLOPs per MAC
FLOPS_PER_MAC_TRAINED = 6


def dataset_shape(name):
    if name in SHAPES:
        return SHAPES[name]
    with np.load(Path(name), mmap_mode="r") as arrays:
        return len(arrays["train_y"]), tuple(arrays["train_x"].shape[1:])


def trial_cost(config):
    """(ticket MACs per image, training FLOPs). Blocks of one net cost about the same, so the
    ticket's MACs are estimated by removing the first p removable blocks."""
    images, shape = dataset_shape(config.dataset)
    if config.train_subset:
        images = min(images, config.train_subset)
    model = build_model(config.arch, in_channels=shape[0], shortcut=config.shortcut)
    removable = removable_blocks(model, removal_rule(config))
    if config.p and config.kind != "dense":
        model = remove_blocks(model, removable[: config.p])
    macs = count_macs(model, shape)
    recipe = training_recipe(config)
    epochs = recipe.epochs - (config.rewind if config.kind == "after_training" and not config.reinit else 0)
    return macs, FLOPS_PER_MAC_TRAINED * macs * images * epochs


def dry_run_table(entries, tflops):
    lines = [f"{'#':>4}  {'kind':<15}{'arch':<10}{'criterion':<10}{'p':>3}{'rewind':>7}{'seed':>5}{'epochs':>7}"
             f"{'MACs':>9}{'PFLOP':>9}"]
    total = 0.0
    for i, (label, config) in enumerate(entries, 1):
        macs, flops = trial_cost(config)
        total += flops
        rewind = config.rewind if config.kind == "after_training" else ""
        lines.append(f"{i:>4}  {config.kind:<15}{config.arch:<10}{config.criterion if config.p else '-':<10}"
                     f"{config.p:>3}{rewind!s:>7}{config.seed:>5}{training_recipe(config).epochs:>7}"
                     f"{macs / 1e6:>8.1f}M{flops / 1e15:>9.2f}")
    hours = total / (tflops * 1e12) / 3600
    lines.append(f"{len(entries)} trials, {total / 1e15:.1f} PFLOP of training: about {hours:.1f} GPU-hours "
                 f"at an assumed {tflops:g} TFLOP/s sustained (set with --assumed-tflops)")
    return "\n".join(lines)
