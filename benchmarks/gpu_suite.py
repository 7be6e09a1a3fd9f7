#!/usr/bin/env python
"""The whole GPU check in one run of at most --budget seconds (default 300), for a lent GPU.

  python benchmarks/gpu_suite.py OUT_DIR --data data/cifar10-subset.npz     # on a CUDA machine
  python benchmarks/gpu_suite.py OUT_DIR --only packing record              # some stages (keeps OUT_DIR's others)
  python benchmarks/gpu_suite.py OUT_DIR --dry                               # its plumbing on a CPU, in seconds

Stages, in this order:
  tests       `python -m pytest -m cuda tests/test_cuda.py` in a subprocess (LAYERLTH_TEST_DATA = --data),
              then one short run_trial per kind (dense, at_init, after_training, filter) on CUDA, emissions off
  throughput  throughput.py: the plain DataLoader loop vs layerlth in fp32, on its default path, with bf16 +
              channels_last forced, and its default path under torch.compile; resnet20, resnet32, resnet56
  speedup     ticket_speedup.py: Table 4's GraSP tickets vs their FLOPs-ideal speed-up, ResNet56 first
              (p = 12 against the paper's 2.03x), then ResNet32
  packing     gpu_packing.py: 1, 2, 4 and 8 trials (processes) sharing the GPU, ResNet32 on the default
              path; trials/hour against one per GPU and peak memory per trial
  record      measured_throughput.json in OUT_DIR: the shipped kinds plus this GPU's images/s per arch and
              its best trials per GPU, in the form `sweeps/run.py --dry-run` reads (copy it over
              layerlth/sweep/measured_throughput.json to use it); and the hours that
              `sweeps/run.py --grid paper --dry-run` gives on this GPU with it (computed here, no Ray)

Budget: the run ends within --budget seconds. Each stage gets a cap: its share of the time still
left (tests 22%, throughput 40%, speedup 10%, packing 18%, record 10% when all run), so a stage that
finishes early leaves its time to the later ones; `--cap STAGE=SECONDS` sets a stage's cap. A stage
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
torch.compile, the demo grid; packing needs CUDA and is skipped), so CI can check the plumbing.
"""

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = next((p for p in (ROOT / "data" / "cifar10-subset.npz",
                                 ROOT.parent / "shared" / "data" / "cifar10-subset.npz") if p.is_file()),
                    ROOT / "data" / "cifar10-subset.npz")
SHARES = {"tests": 0.22, "throughput": 0.40, "speedup": 0.10, "packing": 0.18, "record": 0.10}
STAGES = tuple(SHARES)
OPTIONAL = ("ray", "wandb", "codecarbon", "torchattacks")  # absent on a bare GPU machine
MAX_FILES = 8
RESERVE_S = 5.0  # kept back from the stages for the last summary
PAPER_P12 = ("resnet56", 12)
# eager (a compilation costs tens of seconds), then last, where a cap costs nothing else, a trial as
# CUDA's default runs it: compiled (another seed: `compile` is not in the dense key, so seed 0's
# stored dense run would be reused untrained)
TRIAL_KINDS = {
    "dense": dict(kind="dense", compile=False),
    "at_init": dict(kind="at_init", criterion="grasp", p=2, compile=False),
    "after_training": dict(kind="after_training", criterion="kl", p=1, rewind=0, compile=False),
    "filter": dict(kind="filter", criterion="grasp", p=1, compile=False),
    "at_init compiled": dict(kind="at_init", criterion="grasp", p=2, seed=1, compile="auto"),
}


class Capped(BaseException):
    """A stage reached its cap (a BaseException, so that no `except Exception` in a stage holds it)."""


class Skipped(Exception):
    """A stage with nothing to do here; its message says why."""


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


def write_atomic(path, text):
    """`text` into `path` through layerlth's atomic writer: never a half-written summary."""
    from layerlth.checkpoints import write_atomic as write  # after `import common` put layerlth on the path

    write(path, lambda handle: handle.write(text.encode()))


def descendants(pid):
    """Every live process below `pid` (read from /proc; none where there is no /proc)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # gone already
        pass


def kill_packed_trials():
    """The processes gpu_packing.py started (multiprocessing's non-daemon children)."""
    import multiprocessing

    for child in multiprocessing.active_children():
        if not child.daemon:
            child.kill()


class Suite:
    def __init__(self, args):
        self.args, self.out = args, args.out_dir
        self.started = time.monotonic()
        self.deadline = self.started + args.budget
        self.lock = threading.RLock()
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_suite-"))
        self.current, self.done, self.cap_s = None, False, 0.0
        self.stage_deadline = self.deadline
        previous = self.out / "summary.json"
        kept = {}
        if args.only and previous.is_file():
            try:
                kept = {name: {**entry, "from_earlier_run": True}
                        for name, entry in json.loads(previous.read_text()).get("stages", {}).items()
                        if name in STAGES and name not in args.stages}
            except (ValueError, AttributeError):
                kept = {}
        self.summary = {
            "suite": "benchmarks/gpu_suite.py", "dry": args.dry, "budget_s": args.budget,
            "started": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
            "argv": sys.argv[1:], "data": args.data, "machine": None, "elapsed_s": 0.0, "finished": False,
            "events": [],  # (seconds into the run, stage, "start" or its status), one per summary write
            "stages": {name: kept.get(name, {"status": "not run" if name in args.stages else "not selected"})
                       for name in STAGES},
        }

    def left(self):
        return self.deadline - time.monotonic()

    def stage_left(self):
        return self.stage_deadline - time.monotonic()

    def cap(self, stage):
        later = [s for s in self.args.stages if self.summary["stages"][s]["status"] in ("not run", "running")]
        left = max(0.0, self.left() - RESERVE_S)
        if stage in self.args.caps:
            return min(self.args.caps[stage], left)
        return left * SHARES[stage] / sum(SHARES[s] for s in later)

    def write(self):
        with self.lock:
            self.summary["elapsed_s"] = round(time.monotonic() - self.started, 1)
            write_atomic(self.out / "summary.json", json.dumps(self.summary, indent=2, default=str) + "\n")
            write_atomic(self.out / "summary.md", markdown(self.summary))

    def event(self, stage, what):
        seconds = round(time.monotonic() - self.started, 1)
        self.summary["events"].append([seconds, stage, what])
        self.write()
        print(f"[{seconds:6.1f} s] {stage}: {what}", flush=True)

    def run(self, name):
        entry = self.summary["stages"][name] = {"status": "running", "result": {}}
        cap = self.cap(name)
        entry["cap_s"] = round(cap, 2)
        if cap <= 0 or (name not in self.args.caps and cap < 1.0):
            entry.update(status="skipped", note=f"no time left in the budget ({self.left():.0f} s left)")
            self.event(name, "skipped")
            return
        self.current, self.cap_s = name, cap
        started = time.monotonic()
        self.stage_deadline = started + cap
        self.event(name, "start")
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, cap)
                entry["status"] = RUNNERS[name](self, entry["result"]) or "ok"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Capped as capped:
            entry.update(status="capped", note=str(capped))
        except Skipped as skipped:
            entry.update(status="skipped", note=str(skipped))
        except (Exception, SystemExit) as error:  # gpu_packing.py raises SystemExit when a process fails
            entry.update(status="error", error=f"{type(error).__name__}: {error}",
                         traceback=traceback.format_exc()[-4000:])
        entry["seconds"] = round(time.monotonic() - started, 1)
        self.current = None
        self.event(name, entry["status"])

    def on_alarm(self, signum, frame):
        kill_packed_trials()
        raise Capped(f"stopped at its cap of {self.cap_s:.0f} s; the results above are those measured before")

    def watchdog(self):
        while self.left() > 0:
            time.sleep(min(self.left(), 0.5))
        if self.done:
            return
        held = self.lock.acquire(timeout=5)  # write even if the main thread is stuck holding it
        if self.done:  # it finished while we waited for the lock
            if held:
                self.lock.release()
            return
        if self.current:
            self.summary["stages"][self.current].update(
                status="killed", note=f"the run reached its budget of {self.args.budget:g} s in this stage")
            self.summary["events"].append([round(time.monotonic() - self.started, 1), self.current, "killed"])
        self.summary["ended"] = "stopped by the watchdog at the budget"
        try:
            self.write()
        finally:
            for pid in descendants(os.getpid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            os._exit(3)


# ---------------------------------------------------------------------------------------------- stages


def device(suite):
    import torch

    return torch.device("cpu" if suite.args.dry else "cuda")


def scaled(suite, per_second, low, high):
    """Steps per measurement for the time this stage has: more time, more steps, same variants."""
    return int(max(low, min(high, suite.stage_left() * per_second)))


def toy_batch(*modules):
    """--dry: batches of 32 instead of the benchmarks' 128 (their BATCH, read when they run)."""
    for module in modules:
        module.BATCH = 32


def stage_tests(suite, found):
    found["pytest"] = run_pytest(suite, timeout=max(10.0, 0.7 * suite.stage_left()))
    suite.write()
    from layerlth.trial import run_trial

    dry = suite.args.dry
    base = dict(arch="resnet20", recipe="he2016", emissions=False, dense_dir=str(suite.tmp / "dense"),
                device=str(device(suite)), seed=0)
    base |= (dict(dataset="digits", epochs=1, train_subset=64, batch_size=32, score_batches=1, score_batch_size=32)
             if dry else dict(dataset=suite.args.data, epochs=2, train_subset=1024, score_batches=2))
    found["trials"] = {}
    for kind, changes in TRIAL_KINDS.items():
        started = time.monotonic()
        try:
            row = run_trial(base | changes)
            found["trials"][kind] = trial_facts(row, dry) | {"seconds": round(time.monotonic() - started, 1)}
        except Exception as error:
            found["trials"][kind] = {"status": "error", "error": f"{type(error).__name__}: {error}",
                                     "traceback": traceback.format_exc()[-2000:], "failed_checks": ["ran"]}
        suite.write()
    failed = found["pytest"]["returncode"] != 0 or any(t.get("failed_checks") or t["status"] != "finished"
                                                       for t in found["trials"].values())
    return "failed" if failed else "ok"


def trial_facts(row, dry):
    keep = ("status", "final_test_acc", "memory_bytes", "memory_method", "precision", "memory_format", "device",
            "device_name", "images_per_second", "train_seconds", "removed", "dense_reused", "cka_vs_dense",
            "emissions_method", "macs_reduction", "compiled", "compile_mode", "compile_seconds")
    facts = {k: row.get(k) for k in keep}
    checks = {"finished": row.get("status") == "finished",
              "test accuracy": isinstance(row.get("final_test_acc"), float)}
    if not dry:
        checks |= {"on CUDA": str(row.get("device", "")).startswith("cuda"),
                   "peak memory from CUDA": row.get("memory_method") == "cuda_peak_allocated"}
    facts["failed_checks"] = [name for name, ok in checks.items() if not ok]
    return facts


PYTEST_LINE = re.compile(r"^(tests/\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b(.*)$")


def run_pytest(suite, timeout):
    """The CUDA tests in their own process; each test's outcome read from -v's lines as they come,
    so a timeout still says which tests ran."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if suite.args.data.endswith(".npz"):
        env["LAYERLTH_TEST_DATA"] = str(Path(suite.args.data).resolve())
    if suite.args.dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the plumbing check: the CUDA tests skip, as on a CPU, on any machine
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-v", "-rfEs", "-p", "no:cacheprovider",
               "tests/test_cuda.py"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    timed_out = False
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(process.pid)
        output, _ = process.communicate()
    except BaseException:  # capped: the tests go with the stage
        kill_group(process.pid)
        process.wait()
        raise
    tests = {}
    for line in output.splitlines():
        match = PYTEST_LINE.match(line.strip())
        if match:
            tests[match.group(1).split("::", 1)[1]] = (match.group(2) + " " + match.group(3).strip()).strip()
    counts = {}
    for outcome in tests.values():
        counts[outcome.split()[0].lower()] = counts.get(outcome.split()[0].lower(), 0) + 1
    return {"command": " ".join(command[1:]), "returncode": None if timed_out else process.returncode,
            "timed_out_after_s": round(timeout) if timed_out else None, "counts": counts, "tests": tests,
            "output_tail": output[-3000:]}


def stage_throughput(suite, found):
    import statistics

    import throughput
    import torch

    from layerlth.data import load_dataset

    dry, dev = suite.args.dry, device(suite)
    archs = ["resnet20"] if dry else ["resnet20", "resnet32", "resnet56"]
    compiled = not dry  # inductor on a CPU costs 25-50 s per net: not in a plumbing check
    data = load_dataset(suite.args.data)
    if dry:
        toy_batch(throughput)
        data = data.subset(train=256, test=64)
    repeats = 1 if dry else 3
    steps = 1 if dry else scaled(suite, 0.4, 5, 50)
    found.update(batch=throughput.BATCH, repeats=repeats, compiled=compiled, archs={},
                 headers=throughput.headers(compiled), rows=[])
    loader = throughput.plain_loader(data, dev)
    data = data.to(dev)
    for i, arch in enumerate(archs):
        started = time.monotonic()
        torch.manual_seed(0)
        try:
            rates = throughput.measure(arch, data, loader, steps, repeats, dev, compiled)
            row = throughput.row(arch, rates, compiled)
        except Exception as error:  # torch.compile's, most likely: keep the other variants of this arch
            if not compiled:
                raise
            found.setdefault("compile_errors", {})[arch] = f"{type(error).__name__}: {error}"[-2000:]
            torch.manual_seed(0)
            rates = throughput.measure(arch, data, loader, steps, repeats, dev, False)
            row = throughput.row(arch, rates, False)
            row.insert(5, "compile failed")
            row.append("-")
        found["archs"][arch] = {"steps": steps, "seconds": round(time.monotonic() - started, 1), "rates": rates,
                                "images_per_second": {name: statistics.median(r) for name, r in rates.items()}}
        found["rows"].append(row)
        suite.write()
        steps = fewer_steps(suite, steps, time.monotonic() - started, len(archs) - i - 1, low=5 if not dry else 1)
    return "ok"


def fewer_steps(suite, steps, seconds, units_left, low):
    """Fewer steps for the next units when the last one's pace would overrun the stage's cap."""
    if not units_left:
        return steps
    allotted = suite.stage_left() / units_left
    return steps if seconds <= allotted else max(low, int(steps * allotted / seconds))


def stage_speedup(suite, found):
    import ticket_speedup

    from layerlth import fastpath
    from layerlth.data import load_dataset

    dry, dev = suite.args.dry, device(suite)
    table = {"resnet20": [1]} if dry else dict(sorted(ticket_speedup.TABLE4.items(), reverse=True))  # resnet56 first
    data = load_dataset(suite.args.data)
    if dry:
        toy_batch(ticket_speedup)
        data = data.subset(train=256, test=64)
    data = data.to(dev)
    fast = fastpath.choose(dev)
    repeats = 1 if dry else 3
    steps = 1 if dry else scaled(suite, 0.4, 4, 30)
    found.update(batch=ticket_speedup.BATCH, repeats=repeats, precision=fast.precision,
                 memory_format=fast.memory_format, headers=ticket_speedup.HEADERS, rows=[], tickets={})
    for i, (arch, ps) in enumerate(table.items()):
        started = time.monotonic()
        figures = {}
        found["rows"] += ticket_speedup.measure(arch, ps, data, steps, repeats, fast, 1 if dry else 2, figures)
        found["tickets"][arch] = {str(p): f | {"steps": steps} for p, f in figures.items()}
        if (arch, 12) == PAPER_P12:
            f = figures[12]
            found["headline"] = (f"ResNet56 p = 12: measured speed-up {f['measured']:.2f}x, FLOPs-ideal "
                                 f"{f['ideal']:.2f}x, the paper's {f['paper']:.2f}x")
        suite.write()
        steps = fewer_steps(suite, steps, time.monotonic() - started, len(table) - i - 1, low=1 if dry else 4)
    return "ok"


def stage_packing(suite, found):
    if suite.args.dry:
        raise Skipped("needs CUDA: gpu_packing.py trains k processes on one GPU")
    import gpu_packing

    from layerlth import fastpath
    from layerlth.data import load_dataset
    from layerlth.recipes import get_recipe

    arch, fast, ks = "resnet32", fastpath.choose("cuda"), [1, 2, 4, 8]
    images_per_trial = len(load_dataset(suite.args.data).train_x) * get_recipe("paper").epochs
    steps, repeats = scaled(suite, 0.4, 5, 20), 3
    found.update(steps=steps, repeats=repeats, images_per_trial=images_per_trial, headers=gpu_packing.HEADERS,
                 rows=[], archs={arch: {"precision": fast.precision, "memory_format": fast.memory_format, "runs": []}})
    for measured in gpu_packing.measure(arch, fast, False, ks, steps, repeats, suite.args.data, images_per_trial):
        found["archs"][arch]["runs"].append({k: v for k, v in measured.items() if k != "row"})
        found["rows"].append(measured["row"])
        suite.write()
    return "ok"


def best_packing(packing_result):
    """{arch: {"trials_per_device", "speedup", "peak_memory_bytes", "measured"}} from the packing
    stage: the k with the most trials/hour (k = 1 unless packing beats one trial per GPU)."""
    best = {}
    for arch, found in (packing_result or {}).get("archs", {}).items():
        runs = [r for r in found.get("runs", []) if r.get("vs_one")]
        if not runs:
            continue
        top = max(runs, key=lambda r: (r["vs_one"], -r["k"]))
        if top["vs_one"] <= 1.0:
            top = next((r for r in runs if r["k"] == 1), top)
        best[arch] = {"trials_per_device": top["k"], "speedup": round(max(top["vs_one"], 1.0), 3),
                      "peak_memory_bytes": top["peak_memory_bytes"],
                      "measured": {str(r["k"]): round(r["vs_one"], 3) for r in runs}}
    return best


def stage_record(suite, found):
    from layerlth import fastpath
    from layerlth.sweep import estimate
    from layerlth.sweep.grid import expand, load_grid

    stages = suite.summary["stages"]
    measured = stages["throughput"].get("result", {}).get("archs", {})
    images_per_second = {arch: round(m["images_per_second"]["layerlth fast"], 1) for arch, m in measured.items()}
    if not images_per_second:
        raise Skipped("no throughput measured (the throughput stage did not run or measured no arch): nothing to record")
    packing = best_packing(stages["packing"].get("result"))
    dev = device(suite)
    kind, fast = estimate.device_kind(dev), fastpath.choose(dev)
    source = "benchmarks/gpu_suite.py" + (" --dry" if suite.args.dry else "")
    path = suite.out / "measured_throughput.json"
    write_atomic(path, json.dumps(estimate.measured_throughput(), indent=2) + "\n")  # the shipped kinds ...
    estimate.record_throughput(kind, images_per_second, source, fast.precision, fast.memory_format,
                               f"{datetime.date.today()}", path=path, packing=packing)  # ... and this one
    found.update(kind=kind, file=path.name, images_per_second=images_per_second, packing=packing)
    suite.write()
    grid = load_grid(suite.args.grid)
    entries = expand(grid)
    table = estimate.dry_run_table(entries, suite.args.assumed_tflops, kinds=[kind], path=path)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(grid["name"]))
    (suite.out / f"{name}-dry-run.txt").write_text(
        f"sweeps/run.py --grid {suite.args.grid} --dry-run, priced with {path.name} of this run\n{table}\n")
    hours, packed = estimate.sweep_hours(entries, kind, path=path)
    found["grid"] = {"grid": suite.args.grid, "trials": len(entries), "file": f"{name}-dry-run.txt",
                     "hours_one_at_a_time": round(hours, 2), "hours_packed": round(packed, 2),
                     "lines": [line.strip() for line in table.splitlines()[-4:] if line.startswith("  ")]}
    return "ok"


RUNNERS = {"tests": stage_tests, "throughput": stage_throughput, "speedup": stage_speedup,
           "packing": stage_packing, "record": stage_record}


# ---------------------------------------------------------------------------------------------- summary


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def markdown(summary):
    s = summary
    lines = [f"# GPU suite{' (--dry: plumbing on a CPU, toy sizes, no figures of worth)' if s['dry'] else ''}", "",
             f"{s['machine'] or 'machine not read yet'}", "",
             f"Started {s['started']}; budget {s['budget_s']:g} s; elapsed {s['elapsed_s']:g} s; "
             f"{'finished' if s['finished'] else s.get('ended', 'running (or stopped before its end)')}.", "",
             table(["stage", "status", "cap s", "seconds", "note"],
                   [[name, e["status"] + (" (earlier run)" if e.get("from_earlier_run") else ""), e.get("cap_s", ""),
                     e.get("seconds", ""), e.get("note") or e.get("error") or ""] for name, e in s["stages"].items()])]
    for name, entry in s["stages"].items():
        result = entry.get("result") or {}
        if not result:
            continue
        lines += ["", f"## {name}", ""]
        lines += SECTIONS[name](result)
    if s.get("optional_modules_imported") is not None:
        lines += ["", f"Ray, W&B, codecarbon, torchattacks imported by the suite: "
                      f"{', '.join(s['optional_modules_imported']) or 'none'}."]
    return "\n".join(lines) + "\n"


def section_tests(r):
    lines = []
    if "pytest" in r:
        t = r["pytest"]
        counts = ", ".join(f"{n} {k}" for k, n in sorted(t["counts"].items())) or "no test outcome read"
        state = f"timed out after {t['timed_out_after_s']} s" if t["timed_out_after_s"] else f"exit {t['returncode']}"
        lines += [f"`{t['command']}`: {state}; {counts}.", ""]
        lines += [table(["test", "outcome"], sorted(t["tests"].items())) if t["tests"] else "(no outcomes)", ""]
        if t["returncode"] != 0:
            lines += ["```", t["output_tail"][-1500:], "```", ""]
    if r.get("trials"):
        rows = []
        for kind, f in r["trials"].items():
            mib = f"{f['memory_bytes'] / 2**20:.0f} MiB" if f.get("memory_bytes") else ""
            rows.append([kind, f.get("status"), _num(f.get("final_test_acc"), 3), mib, f.get("memory_method", ""),
                         f"{f.get('precision', '')} + {f.get('memory_format', '')}", _num(f.get("images_per_second"), 0),
                         f.get("seconds", ""), ", ".join(f.get("failed_checks") or []) or "ok",
                         f.get("error", "")])
        lines += ["One short `run_trial` per kind:", "",
                  table(["kind", "status", "final test acc", "memory", "memory method", "precision + layout", "img/s",
                         "seconds", "failed checks", "error"], rows)]
    return lines


def section_rows(note):
    def render(r):
        lines = [note(r), ""] if note(r) else []
        if r.get("headline"):
            lines += [f"**{r['headline']}**", ""]
        return lines + [table(r["headers"], r["rows"]) if r.get("rows") else "(nothing measured)"]
    return render


def section_record(r):
    lines = [f"{r['file']}: {r['kind']}, images/s {r['images_per_second']}; best packing "
             f"{ {a: (b['trials_per_device'], b['speedup']) for a, b in r['packing'].items()} or 'not measured'}"
             f" (arch: (trials per GPU, trials/hour over one))."]
    if r.get("grid"):
        g = r["grid"]
        lines += ["", f"`sweeps/run.py --grid {g['grid']} --dry-run` on this device ({g['trials']} trials; "
                      f"the whole table in {g['file']}):", "", *[f"    {line}" for line in g["lines"]]]
    return lines


def _num(value, digits):
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else ""


SECTIONS = {
    "tests": section_tests,
    "throughput": section_rows(lambda r: f"batch {r['batch']}, {r['repeats']} repetitions of "
                                         f"{sorted({a['steps'] for a in r['archs'].values()}) or '?'} steps; "
                                         f"ratios to the plain fp32 loop of the same repetition, median (min-max)"
                                         f"{'' if r['compiled'] else '; torch.compile left out (--dry)'}"
                                         + "".join(f"; torch.compile failed on {a}: {e[:300]}"
                                                   for a, e in r.get("compile_errors", {}).items())),
    "speedup": section_rows(lambda r: f"batch {r['batch']}, {r['precision']} + {r['memory_format']}, "
                                      f"{r['repeats']} repetitions; median (min-max)"),
    "packing": section_rows(lambda r: f"{r['repeats']} x {r['steps']} steps per process; a trial = "
                                      f"{r['images_per_trial']:,} images; img/s per trial: median (min-max) over the k"),
    "record": section_record,
}


# ---------------------------------------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    import torch

    if not args.dry and not torch.cuda.is_available():
        print("gpu_suite.py: no CUDA GPU here (torch.cuda.is_available() is False). Run it on a GPU machine, "
              "or add --dry to check its plumbing on this CPU.", file=sys.stderr)
        return 2
    if not args.dry and not Path(args.data).is_file():
        print(f"gpu_suite.py: {args.data} is missing. Copy the subset into the tree (mkdir -p data && cp "
              f"../shared/data/cifar10-subset.npz data/) and carry data/ to the GPU machine.", file=sys.stderr)
        return 2
    if Path(args.data).is_file():
        args.data = str(Path(args.data).resolve())
    if args.dry:
        torch.set_num_threads(1)  # toy sizes gain nothing from threads, and a busy CI machine's cores spin
    import common  # torch and layerlth: after the CUDA check, so that a wrong machine is told at once

    args.out_dir.mkdir(parents=True, exist_ok=True)
    suite = Suite(args)
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
