#!/usr/bin/env python
"""One-shot vs iterative block removal at initialisation: which blocks each chooses, and the
accuracy of both tickets.

  python benchmarks/iterative_removal.py --quick   # 1 scoring batch of 32, 2 epochs on 2,560 images (~10 min on 2 cores)
  python benchmarks/iterative_removal.py           # 10 scoring batches of 128 (a trial's default), 15 epochs on the subset
                                                  # (77 min on 2 CPU cores: 43 of choices, 34 of training)

Choices: for ResNet32 p = 3, 5 and ResNet56 p = 5, 12, GraSP and SNIP, seeds 0-2, at initialisation
without training, the p blocks removed in one shot (the paper's) and in k = p rounds (one block per
round, each round re-scoring the shallower net on the same batches). Round 1 scores the dense net,
so the one-shot choice is `select_lowest` on round 1's scores: one scoring pass is not repeated.
"differ" counts the blocks of the iterative ticket the one-shot ticket keeps.

Accuracy: ResNet32 p = 5 GraSP tickets, one-shot and k = 5, trained as trials (`run_trial`, he2016
recipe shortened to --epochs) beside the dense net, 3 seeds, on the CIFAR-10 subset.
"""

import statistics
import tempfile
import time

import common
import torch

from layerlth import TrialConfig, run_trial
from layerlth.data import load_dataset
from layerlth.models import select_lowest
from layerlth.tickets.procedures import removal_rule, score_and_remove
from layerlth.tickets.trial import initial_dense

CHOICES = {"resnet32": [3, 5], "resnet56": [5, 12]}
CRITERIA = ("grasp", "snip")
SEEDS = (0, 1, 2)


def both_choices(arch, p, criterion, seed, data, scoring):
    """(one-shot blocks, iterative blocks in removal order, seconds of the k = p scoring passes)."""
    config = TrialConfig(arch=arch, dataset=data.name, criterion=criterion, p=p, rounds=p, seed=seed, **scoring)
    dense = initial_dense(config, data, torch.device("cpu"))
    (_, facts), seconds = common.timed(score_and_remove, dense, config, data)
    one_shot = select_lowest(dense, facts["removal_rounds"][0]["scores"], p, removal_rule(config))
    return one_shot, facts["removed"], seconds


def choice_rows(data, scoring):
    rows = []
    for arch, ps in CHOICES.items():
        for p in ps:
            for criterion in CRITERIA:
                found = [both_choices(arch, p, criterion, seed, data, scoring) for seed in SEEDS]
                differ = [len(set(iterative) - set(one)) for one, iterative, _ in found]
                example = sorted(set(found[0][1]) - set(found[0][0]))
                rows.append([arch, p, criterion, " / ".join(map(str, differ)), f"{statistics.fmean(differ):.1f}",
                             ", ".join(example) or "-", f"{statistics.fmean(s for *_, s in found):.1f}"])
                print(f"  {arch} p={p} {criterion}: differ {differ}", flush=True)
    return rows


def accuracy_rows(data_path, scoring, epochs, train_subset):
    store = tempfile.mkdtemp(prefix="iterative-dense-")
    base = dict(arch="resnet32", dataset=data_path, recipe="he2016", epochs=epochs, train_subset=train_subset,
                emissions=False, device="cpu", dense_dir=store, **scoring)
    ways = {"dense": dict(kind="dense"), "one shot": dict(criterion="grasp", p=5),
            "k = 5 rounds": dict(criterion="grasp", p=5, rounds=5)}
    accs = {name: [] for name in ways}
    removed = {name: [] for name in ways}
    for seed in SEEDS:
        for name, way in ways.items():
            started = time.perf_counter()
            row = run_trial(TrialConfig(**base, **way, seed=seed))
            accs[name].append(100 * row["final_test_acc"])
            removed[name].append(sorted(row["removed"]))
            print(f"  seed {seed} {name}: {accs[name][-1]:.2f}% ({time.perf_counter() - started:.0f} s)", flush=True)
    dense = statistics.fmean(accs["dense"])
    rows = []
    for name, values in accs.items():
        mean, std = statistics.fmean(values), statistics.stdev(values)
        differ = sum(r != o for r, o in zip(removed[name], removed["one shot"]))
        rows.append([name, " / ".join(f"{v:.2f}" for v in values), f"{mean:.2f} ± {std:.2f}",
                     "" if name == "dense" else f"{mean - dense:+.2f}",
                     f"{differ} of {len(SEEDS)}" if name not in ("dense", "one shot") else ""])
    return rows


def main(argv=None):
    p = common.parser(__doc__, "1 scoring batch of 32, 2 epochs on 2,560 training images (~10 min on 2 CPU cores)")
    p.add_argument("--epochs", type=int, help="training epochs of the accuracy part (default: 2 quick, 15 full)")
    p.add_argument("--skip-accuracy", action="store_true", help="only the choices (no training)")
    args = p.parse_args(argv)
    epochs = common.positive("--epochs", args.epochs or (2 if args.quick else 15))
    scoring = dict(score_batches=1, score_batch_size=32) if args.quick else dict(score_batches=10, score_batch_size=128)
    train_subset = 2560 if args.quick else None
    data = load_dataset(args.data)
    print(f"# One-shot vs iterative (k = p) removal at init, {data.name}, scoring on {scoring['score_batches']} "
          f"batch(es) of {scoring['score_batch_size']}, seeds {list(SEEDS)}{' (quick)' if args.quick else ''}")
    print(common.machine())
    choices = choice_rows(data, scoring)
    print("\n" + common.table(["arch", "p", "criterion", "blocks chosen differently (seed 0 / 1 / 2)", "mean",
                               "seed 0: only iterative removes", "seconds per seed (k = p passes)"], choices))
    if args.skip_accuracy:
        return
    print(f"\n## ResNet32 p = 5, GraSP: accuracy after {epochs} epochs (he2016 recipe shortened), "
          f"{train_subset or 'all'} training images (the trials score on batches of these)")
    rows = accuracy_rows(args.data, scoring, epochs, train_subset)
    print("\n" + common.table(["net", "test acc % (seed 0 / 1 / 2)", "mean ± std", "vs dense (points)",
                               "seeds whose blocks differ from one shot"], rows))


if __name__ == "__main__":
    main()
