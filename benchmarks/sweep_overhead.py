#!/usr/bin/env python
"""Where a sweep's wall time goes beyond training: a small grid on a local Ray, run several ways.

  python benchmarks/sweep_overhead.py --quick   # 5 trials of 2 epochs per variant, 1 repetition (~4 min on 2 cores)
  python benchmarks/sweep_overhead.py           # 5 trials of 4 epochs, 2 repetitions

The grid (digits, ResNet-20, he2016 recipe: a dense run, then GraSP and SNIP tickets at p = 1, 2)
runs through `sweeps/run.py`'s own code on one local Ray with 2 CPUs, one CPU per trial, each
variant into a fresh results folder so no stored trial is reused:
  fresh workers         W&B offline, codecarbon on, a checkpoint every epoch, --no-reuse-workers
  as shipped            the same, with a finished trial's worker running the next trial (the default)
  no W&B                and --no-wandb
  no W&B, no emissions  and `emissions: false` in the grid
  + final checkpoint    and --checkpoint-every <epochs> (one checkpoint, at the end)

For each: the sweep's wall time against the ideal, (sum of the trials' training seconds) /
concurrency per phase; the time the trials spend outside training (scoring, evaluation, data, MACs,
CKA, emissions, W&B logging, checkpoints: `wall_seconds - train_seconds` of each row); and what is
left outside the trials (Ray worker start-up, Tune's bookkeeping, W&B start/finish, the results
table). The differences between adjacent variants price worker start-up, W&B, emissions and checkpoints.
"""

import contextlib
import importlib.util
import io
import statistics
import tempfile
from pathlib import Path

import common
import yaml

from layerlth.sweep.runner import driver_environment
from layerlth.sweep.store import SweepStore
from layerlth.tickets.verdict import is_dense

CONCURRENCY = 2
VARIANTS = ["fresh workers", "as shipped", "no W&B", "no W&B, no emissions", "+ final checkpoint"]


def grid(epochs, emissions):
    return {"name": "overhead", "defaults": {"dataset": "digits", "arch": "resnet20", "recipe": "he2016",
                                             "epochs": epochs, "score_batches": 2, "emissions": emissions},
            "studies": [{"kind": "dense"}, {"kind": "at_init", "criterion": ["grasp", "snip"], "p": [1, 2]}]}


def sweep_cli():
    spec = importlib.util.spec_from_file_location("sweep_cli", common.ROOT / "sweeps" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_variant(variant, epochs, workdir):
    index = VARIANTS.index(variant)
    folder = Path(tempfile.mkdtemp(dir=workdir))
    grid_path = folder / "grid.yaml"
    grid_path.write_text(yaml.safe_dump(grid(epochs, emissions=index < 3)))
    argv = ["--grid", str(grid_path), "--storage", str(folder / "out"), "--cpus-per-trial", "1",
            "--max-concurrent", str(CONCURRENCY), "--verbose", "0", "--wandb", "offline" if index < 2 else "disabled",
            "--checkpoint-every", str(epochs if index >= 4 else 1)] + (["--no-reuse-workers"] if index == 0 else [])
    with contextlib.redirect_stdout(io.StringIO()):
        code, wall = common.timed(sweep_cli().main, argv)
    if code != 0:
        raise SystemExit(f"variant {variant!r} failed (exit {code}); see {folder}")
    rows = SweepStore(folder / "out" / "overhead").rows()
    return wall, rows


def breakdown(wall, rows):
    """(ideal seconds, seconds in trials beyond training, seconds outside the trials), each per
    phase divided by the trials that ran at once."""
    ideal = inside = 0.0
    for dense in (True, False):
        phase = [r for r in rows if is_dense(r) is dense]
        at_once = min(CONCURRENCY, len(phase))
        ideal += sum(float(r["train_seconds"]) for r in phase) / at_once
        inside += sum(float(r["wall_seconds"]) - float(r["train_seconds"]) for r in phase) / at_once
    return ideal, inside, wall - ideal - inside


def main(argv=None):
    p = common.parser(__doc__, "2 epochs per trial, one repetition (a few minutes on 2 CPU cores)")
    args = p.parse_args(argv)
    repeats = common.positive("--repeats", args.repeats or (1 if args.quick else 2))
    epochs = 2 if args.quick else 4
    driver_environment()
    import ray

    workdir = tempfile.mkdtemp(prefix="lthbench", dir="/tmp")  # short: Ray's socket paths have a length limit
    _, ray_start = common.timed(ray.init, num_cpus=CONCURRENCY, include_dashboard=False,
                                _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"), log_to_driver=False)
    print(f"# Sweep overhead: 5 trials (1 dense, then 4 tickets), {epochs} epochs each on digits, "
          f"{CONCURRENCY} at once, {repeats} repetition(s)")
    print(common.machine())
    print(f"ray.init: {ray_start:.1f} s (once per sweep, not in the table)")
    wall, _ = run_variant("as shipped", epochs, workdir)  # warm-up: Ray's worker pool, imports, the data cache
    print(f"warm-up sweep (not in the table): {wall:.1f} s", flush=True)
    measured = {v: [] for v in VARIANTS}
    for rep in range(repeats):
        for variant in VARIANTS[rep % 2:] + VARIANTS[: rep % 2]:
            measured[variant].append(run_variant(variant, epochs, workdir))
            print(f"  {variant}: {measured[variant][-1][0]:.1f} s", flush=True)
    ray.shutdown()
    rows, walls = [], {}
    for variant in VARIANTS:
        parts = [breakdown(wall, trial_rows) for wall, trial_rows in measured[variant]]
        walls[variant] = statistics.median(w for w, _ in measured[variant])
        ideal, inside, outside = (statistics.median(x) for x in zip(*parts))
        rows.append([variant, f"{walls[variant]:.1f}", f"{ideal:.1f}", f"{walls[variant] / ideal:.2f}",
                     f"{inside:.1f}", f"{outside:.1f}"])
    headers = ["variant", "sweep wall s", "ideal s (train / concurrency)", "wall / ideal",
               "in trials beyond training s", "outside trials s"]
    print(f"\nmedians over {repeats} repetition(s)\n")
    print(common.table(headers, rows))
    costs = [[f"{b} -> {a}", f"{walls[b] - walls[a]:+.1f}"] for b, a in zip(VARIANTS, VARIANTS[1:])]
    print()
    print(common.table(["change", "wall s saved"], costs))


if __name__ == "__main__":
    main()
