#!/usr/bin/env python
"""Measured training speed-up of the paper's Table 4 tickets against their FLOPs-ideal speed-up.

  python benchmarks/ticket_speedup.py --quick   # 3 repetitions of 4 steps per net (~2 min on 2 cores)
  python benchmarks/ticket_speedup.py           # 5 repetitions of 12 steps, tickets scored on 10 batches

For ResNet32 (p = 1, 3, 4, 5: Table 4's p = 4 row has the FLOPs of p = 5) and ResNet56 (p = 3, 4, 5,
12), GraSP tickets at initialisation are made from the dense net on real CIFAR images (as a trial
makes them), then the dense net and its tickets train side by side through layerlth's loop, in
alternating repetitions, on this device's fast path (`--fp32` for full precision).

  measured speed-up = ticket images/s / dense images/s, in the same repetition
  FLOPs-ideal       = dense MACs / ticket MACs
  measured / ideal  = how much of the MAC reduction turns into training time (1 = all of it)
"""

import statistics

import common
import torch

from layerlth import TrialConfig, build_for_images, count_macs
from layerlth.data import load_dataset
from layerlth.tickets import procedures as tickets
from layerlth.training import fastpath

BATCH = 128
TABLE4 = {"resnet32": [1, 3, 4, 5], "resnet56": [3, 4, 5, 12]}
PAPER_SPEEDUP = {("resnet32", 1): 1.10, ("resnet32", 3): 1.35, ("resnet32", 4): 1.57, ("resnet56", 3): 1.16,
                 ("resnet56", 4): 1.24, ("resnet56", 5): 1.34, ("resnet56", 12): 2.03}


def nets(arch, ps, data, score_batches):
    """The dense net and its GraSP tickets, each a physically shallower copy with the dense init."""
    torch.manual_seed(0)
    dense = build_for_images(arch, data.num_classes, data.image_size).to(data.train_x.device)
    made = {0: dense}
    for p in ps:
        config = TrialConfig(arch=arch, dataset=data.name, criterion="grasp", p=p, score_batches=score_batches)
        made[p], _, _ = tickets.at_init(dense, config, data)
    return made


HEADERS = ["arch", "p", "ticket img/s", "dense img/s", "measured speed-up", "FLOPs-ideal", "**measured / ideal**",
           "paper's speed-up"]


def measure(arch, ps, data, steps, repeats, fast, score_batches, found=None):
    """Table rows of `arch`'s tickets; `found` (a dict), when given, gets {p: the row's figures}."""
    models = nets(arch, ps, data, score_batches)
    variants = {p: common.layerlth_steps(model, data, steps, fast, BATCH) for p, model in models.items()}
    common.alternate(variants, 1)  # warm-up
    rates = common.alternate(variants, repeats)
    dense_macs = count_macs(models[0], data.image_size)
    rows = []
    for p in ps:
        measured = common.ratios(rates, p, 0)
        ideal = dense_macs / count_macs(models[p], data.image_size)
        paper = PAPER_SPEEDUP.get((arch, p))
        rows.append([arch, p, f"{statistics.median(rates[p]):.0f}", f"{statistics.median(rates[0]):.0f}",
                     common.summary(measured), f"{ideal:.2f}", f"**{common.summary([m / ideal for m in measured])}**",
                     f"{paper:.2f}" if paper else "-"])
        if found is not None:
            found[p] = {"measured": statistics.median(measured), "measured_runs": measured, "ideal": ideal,
                        "measured_over_ideal": statistics.median(m / ideal for m in measured), "paper": paper,
                        "ticket_images_per_second": statistics.median(rates[p]),
                        "dense_images_per_second": statistics.median(rates[0])}
    return rows


def main(argv=None):
    p = common.parser(__doc__, "3 repetitions of 4 steps, tickets scored on 2 batches (a few minutes on 2 CPU cores)")
    p.add_argument("--steps", type=int, help="training steps per measurement (default: 4 quick, 12 full)")
    p.add_argument("--fp32", action="store_true", help="train in fp32 with the contiguous layout")
    args = p.parse_args(argv)
    repeats = common.positive("--repeats", args.repeats or (3 if args.quick else 5))
    steps = common.positive("--steps", args.steps or (4 if args.quick else 12))
    score_batches = 2 if args.quick else 10
    data = load_dataset(args.data)
    device = "cpu"
    if torch.cuda.is_available():
        device = "cuda"
        data = data.to(device)
    fast = fastpath.FastPath(False, False) if args.fp32 else fastpath.choose(device)
    print(f"# Ticket speed-up vs FLOPs-ideal, batch {BATCH}, {data.name}, {fast.precision} + {fast.memory_format}, "
          f"{repeats} x {steps} steps")
    print(common.machine())
    rows = []
    for arch, ps in TABLE4.items():
        rows += measure(arch, ps, data, steps, repeats, fast, score_batches)
        print(f"  {arch} done", flush=True)
    print(f"\nmedian (min-max) over {repeats} repetitions\n")
    print(common.table(HEADERS, rows))


if __name__ == "__main__":
    main()
