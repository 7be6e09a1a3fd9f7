#!/usr/bin/env python
"""Trials per hour when k trials train as one pack (`layerlth.training.packs.pack`: one process, one device).

  python benchmarks/packs.py --quick     # resnet32, k = 1, 2, 4
  python benchmarks/packs.py             # resnet32, k = 1, 2, 4, 8, 16

A pack of k runs of `arch` (each its own net, seed, optimizer and data order, on the default fast
path: on CUDA each step a graph replay on the run's own stream) trains `epochs` epochs of the images;
the first epoch is the warm-up (capture). A member's later epochs say how many images/s it got
while sharing the device (the loop's own timing, evaluation excluded); their sum over members is
the pack's aggregate images/s, and

  vs one per GPU = aggregate images/s at k / images/s at k = 1 (the trials/hour ratio: same trials)
  trials/hour    = aggregate images/s x 3600 / (images one trial trains: training set x 200 epochs)
  peak memory    = torch.cuda.max_memory_allocated of the whole pack (CUDA only)

On a CPU members step one after another: the aggregate stays one trial's (the same code, no gain).
"""

import copy
import statistics

import common
import torch

from layerlth import build_for_images
from layerlth.foundations.recipes import get_recipe
from layerlth.training import fastpath
from layerlth.training.boundary import RunTerms
from layerlth.training.loop import Run
from layerlth.training.packs.pack import Pack

BATCH = 128
HEADERS = ["arch", "k", "aggregate img/s", "img/s per member", "vs one per GPU", "trials/hour", "peak memory MiB"]


def member(model, data, recipe, seed, fast, rates, fuse=False, arch=None):
    """A pack member: a run whose later epochs' images/s land in `rates`; `fuse`: it may train fused
    with the other members (`layerlth.training.packs.fusion`)."""
    def keep(state):
        if state.metrics and state.epoch > 1:
            rates.setdefault(state.epoch, []).append(state.metrics["images_per_second"])

    run = Run(copy.deepcopy(model), data, recipe, seed=seed, callbacks=[keep], amp=fast.amp,
              channels_last=fast.channels_last, graph=fast.graphed, name=f"member {seed}",
              terms=RunTerms(label=f"member {seed}", fuse=fuse, fuse_tag=arch))
    yield run
    return training_path(run)


def training_path(run):
    """How a member really trained: fused or not, graphed or fallen back to eager."""
    if run.report.fused_group_size > 1:
        return "fused_cuda_graph" if run.report.fused_graphed else "fused_eager"
    return "cuda_graph" if run.graphed else "eager"


def pack_rate(model, data, k, epochs, fast, fuse=False, batch=None):
    """(aggregate images/s, peak memory bytes or None, the members' training paths) of k members
    trained together (fused: as one step). Each member's epoch time leaves its evaluation out,
    fused or not, so the two are compared on training alone."""
    recipe = get_recipe("paper").scaled(epochs=epochs, batch_size=batch or BATCH)
    rates = {}
    cuda = data.train_x.is_cuda
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    works = [(seed, member(model, data, recipe, seed, fast, rates, fuse, type(model).__name__)) for seed in range(k)]
    paths = []
    for finished in Pack(k).run(works):
        if finished.error is not None:
            raise finished.error
        paths.append(finished.result)
    aggregate = statistics.median(sum(per_epoch) for per_epoch in rates.values() if len(per_epoch) == k)
    return aggregate, torch.cuda.max_memory_allocated() if cuda else None, sorted(set(paths))


def measure(arch, data, ks, epochs, device, images_per_trial, fuse=False):
    """Yields each k's figures as it is measured (a capped suite keeps the ones done)."""
    torch.manual_seed(0)
    model = build_for_images(arch, data.num_classes, data.image_size).to(device)
    fast = fastpath.choose(device)
    data = data.to(device)
    one = None
    for k in ks:
        aggregate, peak, paths = pack_rate(model, data, k, epochs, fast, fuse)
        one = one or aggregate
        trials_per_hour = aggregate * 3600 / images_per_trial
        yield {"k": k, "aggregate_images_per_second": aggregate, "vs_one": aggregate / one,
               "trials_per_hour": trials_per_hour, "peak_memory_bytes": peak,
               "path": "+".join(paths),
               "row": [arch, k, f"{aggregate:.0f}", f"{aggregate / k:.0f}", f"{aggregate / one:.2f}",
                       f"{trials_per_hour:.2f}", f"{peak / 2**20:.0f}" if peak else ""]}


def main(argv=None):
    from layerlth.data import load_dataset

    p = common.parser(__doc__, "k = 1, 2, 4 and 3 epochs per pack")
    p.add_argument("--arch", default="resnet32")
    p.add_argument("--ks", type=int, nargs="+", help="pack sizes (default 1 2 4 quick; 1 2 4 8 16 full)")
    p.add_argument("--epochs", type=int, help="epochs per pack, the first a warm-up (default 3 quick, 4 full)")
    p.add_argument("--fuse", action="store_true", help="members train as one fused step (layerlth.training.packs.fusion)")
    args = p.parse_args(argv)
    ks = args.ks or ([1, 2, 4] if args.quick else [1, 2, 4, 8, 16])
    epochs = common.positive("--epochs", args.epochs or (3 if args.quick else 4))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_dataset(args.data)
    images_per_trial = len(data.train_x) * get_recipe("paper").epochs
    print(f"# Packs of {args.arch}, batch {BATCH}, {data.name} ({len(data.train_x)} images), {epochs} epochs")
    print(common.machine())
    rows = [measured["row"] for measured in measure(args.arch, data, ks, epochs, device, images_per_trial, args.fuse)]
    print()
    print(common.table(HEADERS, rows))


if __name__ == "__main__":
    main()
