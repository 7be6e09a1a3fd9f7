#!/usr/bin/env python
"""The whole GPU check in one run of at most --budget seconds (default 300), for a lent GPU.

  python benchmarks/gpu_suite.py OUT_DIR --data data/cifar10-subset.npz     # on a CUDA machine
  python benchmarks/gpu_suite.py OUT_DIR --only packing record              # some stages (keeps OUT_DIR's others)
  python benchmarks/gpu_suite.py OUT_DIR --dry                               # its plumbing on a CPU, in seconds

Stages, in this order:
  tests       `python -m pytest -m cuda tests/test_cuda_engine.py tests/test_cuda_fusion.py tests/test_cuda_graphs.py
              tests/test_cuda_decode.py tests/test_cuda.py` in a subprocess (LAYERLTH_TEST_DATA = --data), the
              engine's stream and graph
              rules first, whole, in time of their own (120 s, or what the budget leaves),
              then one short run_trial per kind (dense, at_init, after_training, filter) eager on CUDA, and
              one as CUDA's default trains it (graphed), emissions off (suite_stages.py)
  throughput  throughput.py: the plain DataLoader loop (2 workers) vs layerlth's eager step in fp32, on its
              default path and with bf16 + channels_last forced; resnet20, resnet32, resnet56
  engines     engines.py: one trial's images/s per engine, steady state (first epoch a warm-up): the
              plain loop with 2 and 8 workers, layerlth eager, CUDA graph, and torch.compile where the
              stage's cap leaves time to compile; resnet32, resnet56, resnet20 (suite_packs.py)
  speedup     ticket_speedup.py: Table 4's GraSP tickets vs their FLOPs-ideal speed-up, ResNet56 first
              (p = 12 against the paper's 2.03x), then ResNet32
  packing     packs.py: packs of k = 1, 2, 4, 8, 16 resnet32 trials in one process (each step a graph
              replay on the member's stream): aggregate images/s, trials/hour against one per GPU
  fusion      suite_fusion.py: k separate vs one grouped convolution at every shape of the CIFAR ResNets
              (3x3, the 3-channel stem, the 1x1 projections; TFLOP/s, cuDNN's autotuner off and on),
              then packs of resnet32 on 50k synthetic on-device images: 8 separate members vs fused
              groups of 1, 4, 8, 16 (aggregate images/s, how each really trained); `faster` decides
              `fuse: auto`
  imagenet    suite_imagenet.py: JPEGs written here at ImageNet's sizes, streamed by layerlth's pipeline
              (decode + RandomResizedCrop in DataLoader workers): its images/s alone, and bf16 ResNet-50
              training images/s fed by it vs fed by synthetic tensors on the device
  record      measured_throughput.json in OUT_DIR: the shipped kinds plus this GPU's images/s per arch (its
              default engine) and its best trials per GPU, in the form `sweeps/run.py --dry-run` and
              `--trials-per-gpu auto` read (copy it over layerlth/sweep/measured_throughput.json to use
              it); and the hours `sweeps/run.py --grid paper --dry-run` gives with it (no Ray)

Budget: the run ends within --budget seconds. The tests stage has 120 s of its own (or what the
budget leaves); each later stage gets a cap: its share of the time still left (throughput 12%,
engines 18%, speedup 6%, packing 16%, fusion 20%, imagenet 10%, record 10% when all run), so a stage
that finishes early leaves its time to the later ones; `--cap STAGE=SECONDS` sets a stage's cap. A stage
past its cap is stopped (SIGALRM; packing's processes killed) and keeps what it measured so far.
Measurements take fewer steps in a smaller cap, never fewer variants. A watchdog ends the run at
the budget whatever it is doing, after writing the summary.

OUT_DIR gets at most 8 files: summary.md and summary.json (rewritten atomically when a stage starts,
after each measurement and when it ends, so a crash, a cap or a kill leaves the results so far),
measured_throughput.json and <grid>-dry-run.txt. Exit status: 0 every stage ran (some may have been
capped or skipped), 1 a stage failed, 2 no CUDA here (without --dry) or bad arguments, 3 stopped at
the budget by the watchdog.

Needs torch with CUDA, torchvision, numpy, scikit-learn, pyyaml and pytest. Not Ray, W&B, codecarbon
or torchattacks (the FGSM/PGD test skips without it): nothing on this path imports them.

Carrying the data to a lent GPU: only the git working tree travels, not ../shared. Copy the subset
into data/, a folder .gitignore ignores, and name that folder in the device tool's `carry`:
  mkdir -p data && cp ../shared/data/cifar10-subset.npz data/
  device run: command "PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py $OUT --data data/cifar10-subset.npz",
              carry ["data"], timeout_s 420 (the budget plus start-up)

--dry runs the stages on the CPU at toy sizes (digits trials, resnet20 only, one step, no
torch.compile, no CUDA graph, the demo grid, packs of 1 and 2 stepped in turn), so CI can check the
plumbing. The suite's code: this file (options, main), suite_core.py (budget, caps, watchdog),
suite_stages.py, suite_packs.py (the stages), suite_report.py (summary.md).
"""

import argparse
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = next((p for p in (ROOT / "data" / "cifar10-subset.npz",
                                 ROOT.parent / "shared" / "data" / "cifar10-subset.npz") if p.is_file()),
                    ROOT / "data" / "cifar10-subset.npz")
OPTIONAL = ("ray", "wandb", "codecarbon", "torchattacks")  # absent on a bare GPU machine
MAX_FILES = 8

from suite_core import STAGES, Suite  # noqa: E402 - beside this file (a script's folder is on sys.path)
from suite_fusion import stage_fusion  # noqa: E402
from suite_imagenet import stage_imagenet  # noqa: E402
from suite_packs import stage_engines, stage_packing, stage_record  # noqa: E402
from suite_stages import stage_speedup, stage_tests, stage_throughput  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", type=Path, help="folder for the summary files (at most 8 files)")
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="the CIFAR-10 subset .npz (default: data/cifar10-subset.npz, else ../shared/data/...)")
    p.add_argument("--budget", type=float, default=300.0, help="hard wall-clock limit of the run, seconds (default 300)")
    p.add_argument("--cap", action="append", default=[], metavar="STAGE=SECONDS",
                   help="a stage's own cap, within what is left of the budget (default: its share of the time "
                        "left); repeat it for several stages")
    p.add_argument("--only", nargs="+", choices=STAGES, metavar="STAGE",
                   help=f"run only these stages (of {', '.join(STAGES)}), in the usual order; the others keep "
                        f"their results from OUT_DIR/summary.json when there is one")
    p.add_argument("--grid", help="grid priced by the record stage (default: paper; demo with --dry)")
    p.add_argument("--assumed-tflops", type=float, default=4.0, help="the dry run's assumed TFLOP/s line (default 4)")
    p.add_argument("--dry", action="store_true",
                   help="run the stages on the CPU at toy sizes: checks the plumbing, measures nothing of worth")
    args = p.parse_args(argv)
    caps = {}
    for item in args.cap:
        stage, _, seconds = item.partition("=")
        try:
            caps[stage] = float(seconds)
        except ValueError:
            p.error(f"--cap {item!r}: use STAGE=SECONDS")
        if stage not in STAGES or caps[stage] < 0:
            p.error(f"--cap {item!r}: STAGE is one of {', '.join(STAGES)} and SECONDS >= 0")
    if args.budget <= 0:
        p.error(f"--budget must be > 0, got {args.budget:g}")
    args.caps, args.stages = caps, [s for s in STAGES if not args.only or s in args.only]
    args.grid = args.grid or ("demo" if args.dry else "paper")
    return args



RUNNERS = {"tests": stage_tests, "throughput": stage_throughput, "engines": stage_engines, "speedup": stage_speedup,
           "packing": stage_packing, "fusion": stage_fusion, "imagenet": stage_imagenet, "record": stage_record}


def main(argv=None):
    args = parse_args(argv)
    import torch

    if not args.dry and not torch.cuda.is_available():
        print("gpu_suite.py: no CUDA GPU here (torch.cuda.is_available() is False). Run it on a GPU machine, "
              "or add --dry to check its plumbing on this CPU.", file=sys.stderr)
        return 2
    if not args.dry and not Path(args.data).is_file():
        print(f"gpu_suite.py: {args.data} is missing. Copy the subset into the tree (mkdir -p data && cp "
              f"\"$(python -m layerlth.data.subset --where)\" data/; `make test-data` makes it) and carry "
              f"data/ to the GPU machine.", file=sys.stderr)
        return 2
    if Path(args.data).is_file():
        args.data = str(Path(args.data).resolve())
    if args.dry:
        torch.set_num_threads(1)  # toy sizes gain nothing from threads, and a busy CI machine's cores spin
    import common  # torch and layerlth: after the CUDA check, so that a wrong machine is told at once

    args.out_dir.mkdir(parents=True, exist_ok=True)
    suite = Suite(args, RUNNERS)
    signal.signal(signal.SIGALRM, suite.on_alarm)
    threading.Thread(target=suite.watchdog, daemon=True).start()
    suite.write()
    suite.summary["machine"] = common.machine()
    for name in args.stages:
        suite.run(name)
    with suite.lock:
        suite.done = True
        suite.summary["finished"] = True
        suite.summary["optional_modules_imported"] = sorted(m for m in sys.modules if m.split(".")[0] in OPTIONAL)
        files = sorted(p.name for p in args.out_dir.rglob("*") if p.is_file())
        suite.summary["files"] = files
        if len(files) > MAX_FILES:
            suite.summary["ended"] = f"{len(files)} files in {args.out_dir}: more than the {MAX_FILES} that come back"
        suite.write()
    statuses = [suite.summary["stages"][name]["status"] for name in args.stages]
    print(f"gpu_suite.py: {', '.join(f'{n} {s}' for n, s in zip(args.stages, statuses))}; "
          f"{suite.summary['elapsed_s']:g} s; summary in {args.out_dir / 'summary.md'}")
    return 1 if any(s in ("failed", "error") for s in statuses) else 0


if __name__ == "__main__":
    sys.exit(main())
