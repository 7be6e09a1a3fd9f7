"""The GPU suite's stages for using the whole GPU: one trial on each engine (eager, CUDA graph,
torch.compile) beside the plain loop with 2 and 8 DataLoader workers; packs of k = 1..16 trials in
one process; and the record: measured_throughput.json and the paper grid's GPU-hours from them."""

import datetime
import json
import re
import time

from suite_core import Skipped, write_atomic
from suite_fusion import best_fused_packing
from suite_stages import device, toy_batch

ENGINE_ARCHS = ("resnet32", "resnet56", "resnet20")  # the targets' two first
COMPILE_NEEDS_S = 150  # what compiling resnet32 and resnet56 took there (30-80 s each), with margin
PACK_KS = (1, 2, 4, 8, 16)


def stage_engines(suite, found):
    """Per arch: plain loop with 2 and 8 workers, then layerlth's eager, graphed and compiled steps."""
    import engines

    from layerlth.data import load_dataset

    dry, dev = suite.args.dry, device(suite)
    data = load_dataset(suite.args.data)
    archs, workers, epochs = ENGINE_ARCHS, (2, 8), 3
    if dry:
        toy_batch(engines)
        data, archs, workers, epochs = data.subset(train=128, test=64), ("resnet20",), (0,), 2
    compiled = not dry and suite.stage_left() > COMPILE_NEEDS_S
    found.update(batch=engines.BATCH, epochs=epochs, compiled=compiled, headers=engines.HEADERS, rows=[], archs={})
    for arch in archs:
        started = time.monotonic()
        variants = found["archs"][arch] = {}

        def keep(name, figures):
            variants[name] = figures
            suite.write()

        chosen = [e for e in engines.ENGINES if e != "compiled" or compiled]
        engines.measure(arch, data, epochs, dev, chosen, workers, keep)
        found["rows"] += engines.rows(arch, variants)
        variants["seconds"] = round(time.monotonic() - started, 1)
        suite.write()
    return "ok"


def stage_packing(suite, found):
    """Packs of k resnet32 trials in one process, graphed on CUDA: aggregate img/s, vs one per GPU."""
    import packs

    from layerlth.data import load_dataset
    from layerlth.foundations.recipes import get_recipe

    dry, dev = suite.args.dry, device(suite)
    data, arch, ks, epochs = load_dataset(suite.args.data), "resnet32", PACK_KS, 3
    if dry:
        toy_batch(packs)
        data, arch, ks, epochs = data.subset(train=128, test=64), "resnet20", (1, 2), 2
    images_per_trial = len(data.train_x) * get_recipe("paper").epochs
    found.update(epochs=epochs, images_per_trial=images_per_trial, headers=packs.HEADERS, rows=[],
                 archs={arch: {"runs": []}})
    for measured in packs.measure(arch, data, ks, epochs, dev, images_per_trial):
        found["archs"][arch]["runs"].append({k: v for k, v in measured.items() if k != "row"})
        found["rows"].append(measured["row"])
        suite.write()
    return "ok"


def targets(stages, paper_hours):
    """The issue's targets against what this run measured: [(target, measured, goal, met or None)]."""
    engines = stages["engines"].get("result", {}).get("archs", {})
    rows = []
    for arch in ("resnet32", "resnet56"):
        variants = engines.get(arch, {})
        graph, plain = variants.get("graph"), variants.get("plain 8w")
        ratio = graph["images_per_second"] / plain["images_per_second"] if graph and plain else None
        rows.append([f"one {arch} trial / plain loop, 8 workers", ratio, 3.0])
    runs = {r["k"]: r for r in stages["packing"].get("result", {}).get("archs", {}).get("resnet32", {}).get("runs", [])}
    plain = engines.get("resnet32", {}).get("plain 8w")
    pack = runs[8]["aggregate_images_per_second"] / plain["images_per_second"] if 8 in runs and plain else None
    rows.append(["pack of 8 resnet32 trials / plain loop, 8 workers", pack, 8.0])
    fused = {(p["k"], p["fused"]): p["aggregate_images_per_second"]
             for p in stages.get("fusion", {}).get("result", {}).get("packs", [])}
    rows.append(["fused pack of 8 resnet32, img/s", fused.get((8, True)), 120_000])
    rows.append(["paper grid, GPU-hours packed, evaluation included (at most)", paper_hours, 2.5])
    return [[name, None if value is None else round(value, 2), goal,
             None if value is None else (value <= goal if "at most" in name else value >= goal)]
            for name, value, goal in rows]


def default_rates(stages):
    """{arch: img/s} of one trial on this device's default engine (graph on CUDA, eager on a CPU),
    from the engines stage; else throughput's default eager path."""
    rates = {}
    for arch, variants in stages["engines"].get("result", {}).get("archs", {}).items():
        best = variants.get("graph") or variants.get("eager")
        if best:
            rates[arch] = round(best["images_per_second"], 1)
    if rates:
        return rates
    measured = stages["throughput"].get("result", {}).get("archs", {})
    return {arch: round(m["images_per_second"]["layerlth fast"], 1) for arch, m in measured.items()}


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
    from layerlth.sweep import estimate
    from layerlth.sweep.grid import expand, load_grid
    from layerlth.training import fastpath

    stages = suite.summary["stages"]
    images_per_second = default_rates(stages)
    if not images_per_second:
        raise Skipped("no throughput measured (the engines and throughput stages did not run): nothing to record")
    packing = best_packing(stages["packing"].get("result"))
    fusion = stages.get("fusion", {}).get("result") or {}
    if fusion.get("faster"):  # fused packs are what `fuse: auto` will run here: price the grid with them
        for arch, best in best_fused_packing(fusion).items():
            if best["speedup"] > packing.get(arch, {}).get("speedup", 0):
                packing[arch] = best
    fusion_entry = {"faster": bool(fusion.get("faster")), "fused_over_separate": fusion.get("fused_over_separate"),
                    "source": "benchmarks/gpu_suite.py fusion stage"} if "faster" in fusion else None
    dev = device(suite)
    kind, fast = estimate.device_kind(dev), fastpath.choose(dev)
    source = "benchmarks/gpu_suite.py" + (" --dry" if suite.args.dry else "")
    path = suite.out / "measured_throughput.json"
    write_atomic(path, json.dumps(estimate.measured_throughput(), indent=2) + "\n")  # the shipped kinds ...
    estimate.record_throughput(kind, images_per_second, source, fast.precision, fast.memory_format,
                               f"{datetime.date.today()}", path=path, packing=packing, fusion=fusion_entry)  # ... and this one
    found.update(kind=kind, file=path.name, images_per_second=images_per_second, packing=packing, fusion=fusion_entry)
    suite.write()
    grid = load_grid(suite.args.grid)
    entries = expand(grid)
    table = estimate.dry_run_table(entries, suite.args.assumed_tflops, kinds=[kind], path=path)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(grid["name"]))
    (suite.out / f"{name}-dry-run.txt").write_text(
        f"sweeps/run.py --grid {suite.args.grid} --dry-run, priced with {path.name} of this run\n{table}\n")
    hours, packed = estimate.sweep_hours(entries, kind, path=path)
    found["targets"] = targets(stages, packed if suite.args.grid == "paper" else None)
    found["grid"] = {"grid": suite.args.grid, "trials": len(entries), "file": f"{name}-dry-run.txt",
                     "hours_one_at_a_time": round(hours, 2), "hours_packed": round(packed, 2),
                     "lines": [line.strip() for line in table.splitlines()[-4:] if line.startswith("  ")]}
    return "ok"


