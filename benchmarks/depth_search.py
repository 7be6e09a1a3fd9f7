#!/usr/bin/env python
"""Depth search against the exhaustive grid it replaces, for real, on real CIFAR-10 images.

  python benchmarks/depth_search.py --quick   # ResNet32, 2 seeds, 640 images, 3 epochs (~10 min, 2 cores)
  python benchmarks/depth_search.py           # 3 seeds, 2048 images, 6 epochs

1. The exhaustive grid: ResNet32's dense net and its GraSP tickets at initialisation for every p the
   removal rule allows (1..9), every seed, trained one after the other into a store.
2. The search over the same range against that store: every trial it asks for is looked up, not
   trained, so the count of trials it needs is exact; its p* beside the grid's (the largest p that
   wins, and every p below it too).
3. The same search live in a fresh store on a smaller range: it trains what it asks for.
4. Early stopping's agreement on the grid's full curves: how often a ticket trailing its dense run
   by more than the margin at a rung also loses at the end.
Prints a table (markdown) and writes the figure to --figure.
"""

import argparse
import tempfile
import time
from pathlib import Path

import common

from layerlth.foundations.config import TrialConfig
from layerlth.foundations.storage import Storage
from layerlth.search.core import Search, outcome, run_search
from layerlth.search.early import agreement
from layerlth.sweep.local_search import stored, trainer
from layerlth.sweep.store import SweepStore

DATA = common.default_data()


def grid_p_star(search, records):
    """The exhaustive grid's answer: the largest p such that it and every p below it win."""
    p_star, all_won, diffs = None, True, {}
    for p in range(search.low, search.high + 1):
        won, evidence = outcome(search, records, p)
        diffs[p] = evidence.get("diff")
        all_won = all_won and won
        if all_won:
            p_star = p
    return p_star, diffs


def run_grid(search, store, root):
    train, lookup, started = trainer(store, root), stored(store), time.perf_counter()
    configs = search.round_configs(range(search.low, search.high + 1), first=True)
    for i, config in enumerate(configs, 1):
        if lookup(config) is None:
            print(f"grid {i}/{len(configs)}: p={config.p} seed={config.seed}", flush=True)
            train(config)
    records = {c.hash(): lookup(c) for c in configs}
    return records, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 640 images, 3 epochs")
    parser.add_argument("--data", default=str(DATA), help="an .npz of images (default: the CIFAR-10 subset)")
    parser.add_argument("--work", help="where the stores go (default: a temporary folder)")
    parser.add_argument("--figure", default=str(common.ROOT / "benchmarks" / "depth_search.png"))
    args = parser.parse_args()
    seeds, images, epochs = ((0, 1), 640, 3) if args.quick else ((0, 1, 2), 2048, 6)
    work = Path(args.work or tempfile.mkdtemp(prefix="depth-search-"))
    base = TrialConfig(kind="at_init", arch="resnet32", dataset=args.data, criterion="grasp", recipe="he2016",
                       epochs=epochs, train_subset=images, score_batches=2, score_batch_size=64, emissions=False,
                       device="cpu")
    search = Search("resnet32 grasp", base, seeds, 1, 9)

    grid_root = Storage(work / "grid")
    grid_records, grid_seconds = run_grid(search, SweepStore(grid_root), grid_root)
    grid_star, grid_diffs = grid_p_star(search, grid_records)
    looked_up, trained = run_search(search, stored(SweepStore(grid_root)), lambda c: 1 / 0, print)
    assert trained == 0

    live_search = Search("resnet32 grasp (live, 1..4)", base, seeds, 1, 4)
    live_root = Storage(work / "live")
    started = time.perf_counter()
    live, live_trained = run_search(live_search, stored(SweepStore(live_root)), trainer(SweepStore(live_root), live_root))
    live_seconds = time.perf_counter() - started
    rows = list(grid_records.values())
    rungs = (1 / 3, 2 / 3)
    agree = agreement(rows, rungs, 2.0)

    grid_epochs = sum(r["epochs_trained"] for r in rows)
    print(f"\n{common.machine()}; ResNet32 GraSP at init, CIFAR-10 subset: {images} train images, {epochs} epochs "
          f"(he2016), seeds {list(seeds)}, xi = 0\n")
    print("| run | range | p* | trials | epochs | share of the grid's epochs | wall |")
    print("|---|---|---|---|---|---|---|")
    print(f"| exhaustive grid | 1..9 | {grid_star} | {len(rows)} | {grid_epochs} | 100% | {grid_seconds:.0f} s |")
    print(f"| search on the grid's records | 1..9 | {looked_up['p_star']} | {looked_up['trials']} (0 trained) | "
          f"{looked_up['epochs']} | {looked_up['epochs'] / grid_epochs:.0%} | - |")
    print(f"| search live, fresh store | 1..4 | {live['p_star']} | {live['trials']} ({live_trained} trained) | "
          f"{live['epochs']} | - | {live_seconds:.0f} s |")
    print(f"\nvisited on the grid's records, in order: {looked_up['visit_order']} "
          f"({', '.join(f'p={p} ' + ('win' if w else 'loss') for p, w in looked_up['visited'].items())})")
    print("grid accuracy difference by p (points): "
          + ", ".join(f"{p}: {d:+.2f}" for p, d in grid_diffs.items()))
    monotone = all(d >= 0 for d in list(grid_diffs.values())[: (grid_star or 0)])
    print(f"contradictions seen by the search: {looked_up['contradictions'] or 'none'}; "
          f"p* agree: {looked_up['p_star'] == grid_star} (grid monotone below p*: {monotone})")
    if agree:
        print(f"early stopping at rungs {[round(r, 2) for r in rungs]} of training, margin 2 points, on the grid's "
              f"curves: {agree['agree']:.0%} of {agree['tickets']} tickets get the final per-seed verdict; "
              f"it stops {agree['stopped']}, of which {agree['stopped_that_lost']} lose at the end")
    from layerlth.search.plot import depth_figure

    depth_figure([looked_up], {looked_up["search"]: grid_diffs}).savefig(args.figure)
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
