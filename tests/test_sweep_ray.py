"""The sweep on a real (local) Ray: retries and errors, W&B, codecarbon, kill and resume."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import run as sweep_cli  # noqa: E402

from layerlth.foundations.config import TrialConfig  # noqa: E402
from layerlth.sweep import tracking  # noqa: E402

FAILING = """
name: failing
defaults: {dataset: digits, arch: resnet20, recipe: he2016, epochs: 2, score_batches: 1}
studies:
  - {kind: dense}
  - {kind: at_init, criterion: snip, p: 1, emissions: false, _test_fail: once}
  - {kind: at_init, criterion: grasp, p: 1, emissions: false, _test_fail: always}
"""


def rows(root):
    return {r["trial_id"]: r for r in (json.loads(p.read_text()) for p in (root / "trials").glob("*/result.json"))}


def test_retry_error_wandb_and_emissions(ray_session, tmp_path, capsys):
    grid = tmp_path / "failing.yaml"
    grid.write_text(FAILING)
    code = sweep_cli.main(["--grid", str(grid), "--storage", str(tmp_path / "store"), "--max-failures", "1",
                           "--wandb", "offline", "--country", "FRA"])
    out = capsys.readouterr().out
    assert code == 1  # one trial errored for good
    root = tmp_path / "store" / "failing"
    results = rows(root)
    by_criterion = {(r["kind"], r["criterion"] if r["p"] else "-"): r for r in results.values()}
    assert by_criterion[("at_init", "snip")]["status"] == "finished"  # failed once, retried
    errored = by_criterion[("at_init", "grasp")]
    assert errored["status"] == "errored" and 'trainable.py", line' in errored["error"]  # the traceback
    assert "test failure (always)" in errored["error"]
    dense = by_criterion[("dense", "-")]
    assert dense["energy_kwh"] > 0 and dense["country"] == "FRA" and "cpu:" in dense["emissions_method"]
    table = pd.read_csv(root / "results.csv")
    assert sorted(table["status"]) == ["errored", "finished", "finished"] and table["trial_id"].is_unique
    assert (root / "results.parquet").is_file() and str(root / "results.csv") in out
    # one offline W&B run per trial that started, grouped by sweep and tagged with the trial
    for row in (dense, by_criterion[("at_init", "snip")]):
        [log] = Path(row["wandb_run"]).parent.glob("*.wandb")
        blob = log.read_bytes()
        config = TrialConfig.from_dict({k: row[k] for k in TrialConfig.__dataclass_fields__})
        assert b"failing" in blob and all(tag.encode() in blob for tag in tracking.tags(config))
    assert len(list((root / "wandb" / "wandb").glob("offline-run-*"))) == 2


def test_unreachable_wandb_falls_back_to_offline_within_30s(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "f" * 40)  # a key, but no server answers
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("WANDB_MODE")
    assert tracking.resolve_mode("auto") == "online"
    started = time.perf_counter()
    run = tracking.start_run(TrialConfig(), "group", "online", "layerlth", directory=str(tmp_path))
    took = time.perf_counter() - started
    assert run.offline and took < 30, took
    run.finish()


RESUMABLE = """
name: resumable
defaults: {dataset: digits, arch: resnet20, recipe: he2016, epochs: 10, score_batches: 1, emissions: false,
           seed: [0, 1]}
studies:
  - {kind: dense}
  - {kind: at_init, criterion: grasp, p: [1, 2]}
"""


def checkpoints(root):
    """{trial id: highest checkpoint index} over Ray's experiment folders."""
    found = {}
    for path in (root / "tune").glob("*/*/checkpoint_*"):
        found[path.parent.name] = max(found.get(path.parent.name, -1), int(path.name.split("_")[1]))
    return found


def power_cut(pid):
    """Stop, then kill, a process and all its descendants at once: the driver, the local Ray it
    started and Ray's workers, which would otherwise outlive a killed driver by a second or so."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for signal_ in (signal.SIGSTOP, signal.SIGKILL):
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal_)
    psutil.wait_procs(procs, timeout=30)


def kill_driver_when(argv, tmp_path, ready, what, timeout=240):
    """Run sweeps/run.py in a process of its own; cut its power once `ready()` is true."""
    # its own short temp dir: Ray's socket paths must stay under 108 bytes
    env = dict(os.environ, RAY_TMPDIR=tempfile.mkdtemp(prefix="ray", dir="/tmp"), PYTHONUNBUFFERED="1")
    log = tmp_path / "driver.log"
    driver = subprocess.Popen([sys.executable, str(ROOT / "sweeps" / "run.py"), *argv, "--num-cpus", "2"],
                              env=env, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        found = ready()
        if found:
            power_cut(driver.pid)
            driver.wait()
            return found
        time.sleep(0.3)
    pytest.fail(f"the sweep never got to the point where {what}:\n{log.read_text()[-3000:]}")


def test_killed_sweep_resumes_from_checkpoints(ray_session, tmp_path, capsys):
    grid = tmp_path / "resumable.yaml"
    grid.write_text(RESUMABLE)
    storage = tmp_path / "store"
    root = storage / "resumable"
    argv = ["--grid", str(grid), "--storage", str(storage), "--no-wandb", "--max-concurrent", "2"]

    def half_way():  # a ticket finished and another is half-way
        done = rows(root) if (root / "trials").is_dir() else {}
        running = {t: c for t, c in checkpoints(root).items() if t not in done and 2 <= c <= 7}
        return running if any(r["kind"] == "at_init" for r in done.values()) and running else None

    running = kill_driver_when(argv, tmp_path, half_way, "a ticket finished and another is half-way")
    before = {t: (root / "trials" / t / "result.json").read_text() for t in rows(root)}
    interrupted = set(running) - set(before)  # a trial may finish between the last look and the cut
    assert interrupted, (running, before.keys())

    capsys.readouterr()
    assert sweep_cli.main([*argv, "--resume"]) == 0  # a new experiment: Ray's own state is not read
    assert f"resuming {root}: {6 - len(before)} trials to run" in capsys.readouterr().out
    after = rows(root)
    table = pd.read_csv(root / "results.csv")
    assert len(after) == 6 and sorted(table["trial_id"]) == sorted(after)  # every trial exactly once
    for trial_id, text in before.items():  # finished trials were not rerun
        assert (root / "trials" / trial_id / "result.json").read_text() == text
        assert json.loads(text)["attempt_start_epochs"] == [0]
    for trial_id in interrupted:  # interrupted trials went on from their checkpoint
        starts = after[trial_id]["attempt_start_epochs"]
        assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 2, starts
        assert after[trial_id]["resumed_from_epoch"] == starts[1] and after[trial_id]["epochs_trained"] == 10

    capsys.readouterr()
    assert sweep_cli.main(argv) == 0  # relaunching reuses every stored trial
    out = capsys.readouterr().out
    assert "6 trials: 6 already finished, 0 to run" in out


REUSED = """
name: reused
defaults: {dataset: digits, arch: resnet20, recipe: he2016, epochs: 1, score_batches: 1, emissions: false}
studies:
  - {kind: dense}
  - {kind: at_init, criterion: [snip, grasp], p: 1}
"""


def test_reused_workers_give_the_results_of_fresh_ones(ray_session, tmp_path):
    """A worker that runs trial after trial carries nothing from one to the next: same seeds, same rows."""
    grid = tmp_path / "reused.yaml"
    grid.write_text(REUSED)
    found = {}
    for variant, extra in (("reused", []), ("fresh", ["--no-reuse-workers"])):
        argv = ["--grid", str(grid), "--storage", str(tmp_path / variant), "--no-wandb", "--max-concurrent", "1"]
        assert sweep_cli.main(argv + extra) == 0
        found[variant] = rows(tmp_path / variant / "reused")
    reused, fresh = found["reused"], found["fresh"]
    assert len({r["worker_pid"] for r in reused.values()}) == 1  # one worker ran all three trials
    assert len({r["worker_pid"] for r in fresh.values()}) == 3

    def learned(row):  # what a trial computed, without its timings
        return row["removed"], row["scores"], [(h["train_loss"], h["test_acc"]) for h in row["history"]]

    assert {t: learned(r) for t, r in reused.items()} == {t: learned(r) for t, r in fresh.items()}
