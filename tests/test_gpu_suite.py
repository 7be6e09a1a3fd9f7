"""benchmarks/gpu_suite.py, the GPU check run on a lent GPU, as far as a CPU can check it: it refuses a
machine without CUDA at once, and --dry runs its stages at toy sizes where Ray, W&B, codecarbon and
torchattacks are missing, within caps, leaving at most 8 files whose summary was rewritten as it went."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hidden_modules import blocker

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"
HIDDEN = ("ray", "wandb", "codecarbon", "torchattacks", "boto3", "imagecorruptions", "wandb_workspaces")
BLOCKER = blocker(HIDDEN)


def suite_module(name="gpu_suite"):
    sys.path.insert(0, str(SUITE.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, SUITE.parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SUITE.parent))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the suite would run")
def test_without_cuda_it_says_so_at_once_and_exits_2(tmp_path):
    done = subprocess.run([sys.executable, str(SUITE), str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "no CUDA GPU here" in done.stderr and "--dry" in done.stderr
    assert not (tmp_path / "out").exists()


def test_dry_runs_every_stage_within_caps_rewriting_its_summary_where_ray_and_co_are_missing(tmp_path, cifar_fixture):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)  # in every Python process the suite starts
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]))
    out = tmp_path / "out"
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(SUITE), str(out), "--dry", "--data", cifar_fixture,
                                "--cap", "speedup=0.05"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen = set()  # the stage statuses of every summary.json read while the suite runs
    while process.poll() is None and time.monotonic() - started < 170:
        try:
            summary = json.loads((out / "summary.json").read_text())
            seen.add(tuple(e["status"] for e in summary["stages"].values()))
        except (OSError, ValueError):
            pass  # not written yet (the rename makes a half-written file impossible)
        time.sleep(0.05)
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output[-3000:]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and {"summary.md", "summary.json", "measured_throughput.json"} <= set(files), files
    summary = json.loads((out / "summary.json").read_text())
    stages = summary["stages"]
    assert {n: e["status"] for n, e in stages.items()} == {
        "tests": "ok", "throughput": "ok", "engines": "ok", "speedup": "capped", "packing": "ok", "fusion": "ok",
        "imagenet": "ok", "record": "ok"}
    assert summary["finished"] and summary["optional_modules_imported"] == []
    # rewritten when each stage started and ended: the events, and summaries seen mid-run
    assert [e[1:] for e in summary["events"]] == [
        ["tests", "start"], ["tests", "ok"], ["throughput", "start"], ["throughput", "ok"], ["engines", "start"],
        ["engines", "ok"], ["speedup", "start"], ["speedup", "capped"], ["packing", "start"], ["packing", "ok"],
        ["fusion", "start"], ["fusion", "ok"], ["imagenet", "start"], ["imagenet", "ok"], ["record", "start"],
        ["record", "ok"]]
    assert ("running", *["not run"] * 7) in seen or ("ok", "running", *["not run"] * 6) in seen
    fusion = stages["fusion"]["result"]  # separate pack of 2, fused groups of 1 and 2, on the CPU
    assert [(p["k"], p["fused"]) for p in fusion["packs"]] == [(2, False), (1, True), (2, True)]
    assert all(p["aggregate_images_per_second"] > 0 for p in fusion["packs"]) and fusion["convs"][0]["grouped_tflops"] > 0
    assert isinstance(fusion["faster"], bool)
    imagenet = stages["imagenet"]["result"]
    assert imagenet["pipeline_cpu_images_per_second"] > 0 and imagenet["training_fed_cpu_images_per_second"] > 0
    assert imagenet["decode_pick"] == "cpu"  # nvJPEG runs only on a GPU
    assert stages["speedup"]["cap_s"] == 0.05 and "stopped at its cap" in stages["speedup"]["note"]
    assert all(c > 0 for c in (stages["tests"]["cap_s"], stages["record"]["cap_s"]))
    tests = stages["tests"]["result"]
    assert tests["pytest"]["returncode"] == 0 and set(tests["pytest"]["counts"]) == {"skipped"}  # no CUDA here
    assert {k: t["status"] for k, t in tests["trials"].items()} == dict.fromkeys(
        ["dense", "at_init", "after_training", "filter", "at_init graphed"], "finished")
    assert tests["trials"]["at_init graphed"]["training_path"] == "eager"  # graph "auto": CUDA only
    engines = stages["engines"]["result"]["archs"]["resnet20"]
    assert engines["eager"]["images_per_second"] > 0 and "graph" not in engines  # no graph without CUDA
    [one, two] = stages["packing"]["result"]["archs"]["resnet20"]["runs"]  # packs of 1 and 2 stepped in turn
    assert (one["k"], two["k"]) == (1, 2) and one["vs_one"] == 1.0 and two["aggregate_images_per_second"] > 0
    assert stages["throughput"]["result"]["rows"][0][0] == "resnet20"
    measured = json.loads((out / "measured_throughput.json").read_text())
    recorded = measured[stages["record"]["result"]["kind"]]
    assert recorded["source"] == "benchmarks/gpu_suite.py --dry" and recorded["images_per_second"]["resnet20"] > 0
    assert recorded["fusion"]["faster"] == fusion["faster"]  # what `fuse: auto` reads for this kind
    assert set(json.loads((ROOT / "layerlth" / "sweep" / "measured_throughput.json").read_text())) <= set(measured)
    assert stages["record"]["result"]["grid"]["trials"] > 0 and (out / "demo-dry-run.txt").is_file()
    markdown = (out / "summary.md").read_text()
    assert "| speedup | capped |" in markdown and "## throughput" in markdown


def test_best_packing_is_the_k_with_most_trials_per_hour():
    best_packing = suite_module("suite_packs").best_packing
    runs = [{"k": 1, "vs_one": 1.0, "peak_memory_bytes": 10}, {"k": 2, "vs_one": 1.7, "peak_memory_bytes": 11},
            {"k": 4, "vs_one": 2.2, "peak_memory_bytes": 12}, {"k": 8, "vs_one": 2.1, "peak_memory_bytes": 13}]
    assert best_packing({"archs": {"resnet32": {"runs": runs}}}) == {"resnet32": {
        "trials_per_device": 4, "speedup": 2.2, "peak_memory_bytes": 12,
        "measured": {"1": 1.0, "2": 1.7, "4": 2.2, "8": 2.1}}}
    slower = [dict(r, vs_one=v) for r, v in zip(runs, [1.0, 0.9, 0.8, 0.7])]
    assert best_packing({"archs": {"resnet32": {"runs": slower}}})["resnet32"]["trials_per_device"] == 1
    assert best_packing(None) == {} and best_packing({"archs": {"resnet32": {"runs": []}}}) == {}


@pytest.mark.parametrize("argv,message", [(["--cap", "speed=3"], "STAGE is one of"), (["--cap", "tests"], "STAGE=SECONDS"),
                                          (["--budget", "0"], "--budget must be > 0"), (["--only", "all"], "invalid choice")])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        suite_module().parse_args(["out", *argv])
    assert exit.value.code == 2 and message in capsys.readouterr().err
