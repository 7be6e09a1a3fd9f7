#!/usr/bin/env python
"""Run a layerlth study as a Ray Tune sweep.

  python sweeps/run.py --grid paper --dry-run --slots 8 32   # the trials, their cost, hours on N slots
  python sweeps/run.py --grid demo                  # a few-minute miniature, offline, on a CPU
  python sweeps/run.py --grid my_study.yaml --gpus-per-trial 0.25 --address auto
  python sweeps/run.py --grid paper --resume        # finish a killed sweep from the stored records
  python sweeps/run.py --grid paper --gpus-per-trial 1 --trials-per-gpu 8   # 8 trials packed per GPU
  python sweeps/run.py --grid depth --dry-run       # depth searches: the largest p that still wins, priced

A grid (sweeps/grids/*.yaml or your own file) lists trials as defaults plus studies whose list
values expand as a cartesian product; every key is a trial option (`layerlth ticket --help`).
Its `searches` find the largest p whose ticket still wins, in rounds (README, "Depth search").
Everything is validated before Ray starts. Dense, at-init and filter trials start at once; an
after-training ticket starts when its dense run is stored, and reads its saved weights from there.
Each finished trial is stored under the hash of its config in <storage>/<name>/trials/, so a
relaunch (with or without --resume) reuses it. Results: <storage>/<name>/results.csv and
results.parquet, one row per trial. <storage> may be an object store (s3://bucket/path) that
every node of a cluster reaches; nothing else needs to be shared.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from layerlth.data import DatasetUnavailable  # noqa: E402
from layerlth.sweep.grid import GridError, builtin_grids  # noqa: E402
from layerlth.sweep.lease.local import SweepBusy  # noqa: E402
from layerlth.sweep.runner import DEFAULT_STORAGE, run  # noqa: E402
from layerlth.sweep.store import StoreFailed  # noqa: E402
from layerlth.sweep.tracking import MODES  # noqa: E402


def trials_per_gpu(text):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number >= 1, or auto")
    return value


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True,
                   help=f"built-in grid name ({', '.join(builtin_grids())}: sweeps/grids/NAME.yaml) "
                        f"or path to a YAML grid")
    p.add_argument("--name", help="sweep name, the results folder under --storage (default: the grid's name)")
    p.add_argument("--dry-run", action="store_true", help="list the trials and their estimated cost, then exit")
    p.add_argument("--assumed-tflops", type=float, default=4.0,
                   help="sustained training TFLOP/s per GPU for the --dry-run estimate (default 4, "
                        "an A100-class GPU on small CIFAR ResNets)")
    p.add_argument("--slots", type=int, nargs="+", default=[], metavar="N",
                   help="with --dry-run: simulate the sweep on N trial slots, with and without a phase barrier")
    g = p.add_argument_group("Ray")
    g.add_argument("--address", help="Ray cluster to join (e.g. auto, or ray://host:10001); default: local Ray")
    g.add_argument("--storage", help=f"storage every node reaches: a directory or a pyarrow URI such as "
                                     f"s3://bucket/path (default: {DEFAULT_STORAGE} in this directory, ignored by git)")
    g.add_argument("--results-dir", help="the sweep's folder, a directory or URI (default: <storage>/<name>)")
    g.add_argument("--dense-dir", help="shared dense runs, a directory or URI (default <results-dir>/dense)")
    g.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs each trial holds (default 1)")
    g.add_argument("--gpus-per-trial", type=float, default=0,
                   help="GPUs each trial holds; a fraction lets several small nets share one GPU (default 0)")
    g.add_argument("--trials-per-gpu", type=trials_per_gpu, default=1, metavar="K",
                   help="pack up to K trials into one process per device (CPU: one after another, the same code); "
                        "each Tune trial is then a pack holding --gpus-per-trial (give 1 on GPUs: a whole GPU per "
                        "pack) and --cpus-per-trial, refilled as members finish; auto = the best K measured for this "
                        "device in measured_throughput.json (1 where none was). Default 1: one trial per Tune trial")
    g.add_argument("--workers", type=int, metavar="N",
                   help="train every trial data-parallel on N Ray Train workers, each holding --cpus-per-trial "
                        "and one GPU with --gpus-per-trial 1 (the grid's `workers`, default 1; N > 1 needs a "
                        "dataset that streams, docs/imagenet.md)")
    g.add_argument("--fuse", choices=["auto", "true", "false"],
                   help="in packs (--trials-per-gpu K), train members of one CIFAR ResNet architecture and recipe "
                        "as one fused step (the grid's `fuse`, default auto: on only where the GPU suite measured it "
                        "faster, nowhere yet); rows and hashes as without it, to float rounding")
    g.add_argument("--max-concurrent", type=int, default=0, help="trials at once (default: as resources allow)")
    g.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    g.add_argument("--resume", action="store_true",
                   help="finish a killed sweep: the trials not stored run in a new Tune experiment, each from the "
                        "newest checkpoint it left; nothing Ray pickled is read back (a plain relaunch does the "
                        "same; the flag reports what is picked up)")
    g.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint every k epochs (default 1)")
    g.add_argument("--max-failures", type=int, default=2, help="retries of a failing trial (default 2)")
    g.add_argument("--no-reuse-workers", dest="reuse_workers", action="store_false",
                   help="start a fresh Ray worker process for every trial (default: a finished trial's worker "
                        "runs the next one, saving its start-up)")
    g.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Ray's status output (default 1)")
    g = p.add_argument_group("tracking")
    g.add_argument("--wandb", default="auto", choices=MODES,
                   help="W&B mode; auto = online with an API key, else offline (default auto)")
    g.add_argument("--no-wandb", dest="wandb", action="store_const", const="disabled", help="no W&B runs")
    g.add_argument("--wandb-project", default="layerlth", help="W&B project (default layerlth)")
    g.add_argument("--wandb-entity", help="W&B entity (team or user)")
    g.add_argument("--country", help="ISO country code pricing the energy of every trial (default: the grid's, else USA)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run(args)
    except (GridError, DatasetUnavailable, ValueError, SweepBusy) as error:
        print(f"sweeps/run.py: error: {error}", file=sys.stderr)
        return 2
    except (StoreFailed, OSError) as error:  # a full disk or a lost mount: say what, stop cleanly
        print(f"sweeps/run.py: error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
