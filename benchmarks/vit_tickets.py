#!/usr/bin/env python
"""The first at-initialisation layer tickets of a vision transformer: `vit_cifar` (6 encoder blocks,
width 256, 4x4 patches, 3.2M parameters) dense vs GraSP and SNIP tickets with p = 2 and p = 4 of
its 6 blocks removed, 3 seeds, trained as ordinary trials (`run_trial`) on the CIFAR-10 subset.

  python benchmarks/vit_tickets.py --data ../shared/data/cifar10-subset.npz            # 4 epochs (~30 min on 2 cores)
  python benchmarks/vit_tickets.py --data ../shared/data/cifar10-subset.npz --quick    # 1 epoch on 1,280 images

Why these p: the default removal rule keeps the first block and 2 per stage, and a ViT's blocks are
one stage, so p = 4 is the most it allows (two blocks left) and p = 2 is half of that. The recipe is
the paper's SGD (lr 0.01, Nesterov) shortened to --epochs, milestones at the same fractions: no
warm-up, no AdamW, no augmentation beyond crop and flip, so every accuracy here is far below what a
ViT reaches on full CIFAR-10 with its usual recipe. It shows the machinery on a transformer and the
direction of the effect at this scale, not the paper's answer for ViTs.
"""

import tempfile
import time

import common

from layerlth import TrialConfig, run_trial
from layerlth.tickets.verdict import format_verdicts, verdicts

WAYS = [dict(kind="dense")] + [dict(criterion=c, p=p) for c in ("grasp", "snip") for p in (2, 4)]
SEEDS = (0, 1, 2)


def rows(data, epochs, train_subset, store):
    base = dict(arch="vit_cifar", dataset=data, recipe="paper", epochs=epochs, train_subset=train_subset,
                emissions=False, device="cpu", dense_dir=store)
    found = []
    for seed in SEEDS:
        for way in WAYS:
            started = time.perf_counter()
            row = run_trial(TrialConfig(**base, **way, seed=seed))
            found.append(row)
            name = "dense" if way.get("kind") == "dense" else f"{way['criterion']} p={way['p']}"
            print(f"  seed {seed} {name}: {100 * row['final_test_acc']:.2f}% test, {row['macs'] / 1e6:.0f}M MACs, "
                  f"removed {row.get('removed') or '-'} ({time.perf_counter() - started:.0f} s)", flush=True)
    return found


def main(argv=None):
    p = common.parser(__doc__, "1 epoch on 1,280 training images")
    p.add_argument("--epochs", type=int, help="training epochs (default: 1 quick, 4 full)")
    p.add_argument("--dense-dir", help="where dense runs are stored (default: a new temporary folder); "
                                        "a rerun given the same folder reuses them")
    args = p.parse_args(argv)
    epochs = common.positive("--epochs", args.epochs or (1 if args.quick else 4))
    print(f"# vit_cifar at-init tickets, {args.data}, {epochs} epochs, seeds {list(SEEDS)}"
          f"{' (quick)' if args.quick else ''}")
    print(common.machine())
    found = rows(args.data, epochs, 1280 if args.quick else None, args.dense_dir or tempfile.mkdtemp(prefix="vit-dense-"))
    print("\n" + format_verdicts(verdicts(found)))
    macs = {row["p"]: row["macs"] for row in found}
    print("\nMACs per image: " + ", ".join(f"p={p}: {m / 1e6:.1f}M" for p, m in sorted(macs.items())))


if __name__ == "__main__":
    main()
