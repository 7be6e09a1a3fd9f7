"""The GPU suite's first stages: the CUDA tests and one trial per kind, the plain loop against
layerlth's eager loop, and Table 4's ticket speed-ups."""

import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

from suite_core import Skipped, kill_group  # noqa: F401 - Skipped: for stages that find nothing to do

ROOT = Path(__file__).resolve().parents[1]
PAPER_P12 = ("resnet56", 12)
# eager first, then last a trial as CUDA's default runs it: graphed (another seed: `graph` is not in the
# dense key, so seed 0's stored dense run would be reused untrained)
TRIAL_KINDS = {
    "dense": dict(kind="dense", graph=False),
    "at_init": dict(kind="at_init", criterion="grasp", p=2, graph=False),
    "after_training": dict(kind="after_training", criterion="kl", p=1, rewind=0, graph=False),
    "filter": dict(kind="filter", criterion="grasp", p=1, graph=False),
    "at_init graphed": dict(kind="at_init", criterion="grasp", p=2, seed=1, graph="auto"),
}


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


# the CUDA tests, in this order: the engine's stream and graph rules first (the checks a GPU session
# exists for), then fusion, the graphed step and packs, and the rest
CUDA_TESTS = ("tests/test_cuda_engine.py", "tests/test_cuda_fusion.py", "tests/test_cuda_graphs.py",
              "tests/test_cuda_decode.py", "tests/test_cuda.py")
TRIALS_S = 30  # kept from the tests stage's time for the five short trials after pytest


def stage_tests(suite, found):
    found["pytest"] = run_pytest(suite, timeout=max(10.0, suite.stage_left() - TRIALS_S))
    suite.write()
    from layerlth.tickets.trial import run_trial

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
            if not dry and changes.get("graph", "auto") == "auto" and row.get("training_path") != "cuda_graph":
                found["trials"][kind]["failed_checks"].append("trained by the graphed step")
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
            "emissions_method", "macs_reduction", "compiled", "compile_mode", "compile_seconds", "graphed",
            "training_path")
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
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-v", "-rfEs", "-p", "no:cacheprovider", *CUDA_TESTS]
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
    """throughput.py's variants: the plain loop (2 workers) vs layerlth's eager step in fp32, on its
    default path and with bf16 + channels_last forced (torch.compile: the engines stage)."""
    import statistics

    import throughput
    import torch

    from layerlth.data import load_dataset

    dry, dev = suite.args.dry, device(suite)
    archs = ["resnet20"] if dry else ["resnet20", "resnet32", "resnet56"]
    data = load_dataset(suite.args.data)
    if dry:
        toy_batch(throughput)
        data = data.subset(train=256, test=64)
    repeats = 1 if dry else 3
    steps = 1 if dry else scaled(suite, 0.4, 5, 50)
    found.update(batch=throughput.BATCH, repeats=repeats, compiled=False, archs={},
                 headers=throughput.headers(False), rows=[])
    loader = throughput.plain_loader(data, dev)
    data = data.to(dev)
    for i, arch in enumerate(archs):
        started = time.monotonic()
        torch.manual_seed(0)
        rates = throughput.measure(arch, data, loader, steps, repeats, dev, False)
        found["archs"][arch] = {"steps": steps, "seconds": round(time.monotonic() - started, 1), "rates": rates,
                                "images_per_second": {name: statistics.median(r) for name, r in rates.items()}}
        found["rows"].append(throughput.row(arch, rates, False))
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

    from layerlth.data import load_dataset
    from layerlth.training import fastpath

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


