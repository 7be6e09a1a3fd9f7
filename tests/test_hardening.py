"""Hostile and clumsy input, without Ray: bad grid values and .npz files are named before Ray starts,
one driver per sweep, a full disk stops the sweep cleanly (checkpoints, records and dense runs read
back from storage: test_stored_files.py)."""

import errno
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import run as sweep_cli  # noqa: E402

import layerlth.foundations.atomic as checkpoints  # noqa: E402
import layerlth.foundations.storage as storage_module  # noqa: E402
import layerlth.sweep.runner as runner  # noqa: E402
import layerlth.sweep.store as store_module  # noqa: E402
from layerlth.data import load_dataset  # noqa: E402
from layerlth.foundations.field_checks import check_values  # noqa: E402
from layerlth.sweep.store import SweepStore  # noqa: E402


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setattr(runner, "start_ray", lambda args: pytest.fail("Ray started for a bad input"))


def run_cli(tmp_path, grid_text, *extra):
    path = tmp_path / "grid.yaml"
    path.write_text(grid_text)
    return sweep_cli.main(["--grid", str(path), "--no-wandb", "--storage", str(tmp_path / "store"), *extra])


# --- grid values: type and range from the dataclass, the entry named, before Ray -------------------

GRID = "defaults: {arch: resnet20, dataset: digits, epochs: 1}\nstudies:\n  - {kind: dense}\n  - %s\n"
BAD_VALUES = [
    ('{kind: at_init, p: "two"}', r"studies\[1\] \(kind=at_init, p=two\): p='two': expected an integer >= 0"),
    ("{kind: at_init, p: 1.0}", r"studies\[1\] .*: p=1.0: expected an integer >= 0"),
    ("{kind: after_training, p: 1, rewind_epochs: 2}", r"studies\[1\] .*: rewind_epochs=2: expected a list"),
    ("{kind: at_init, p: 1, seed: 1.5}", r"studies\[1\] .*: seed=1.5: expected an integer >= 0"),
    ("{kind: at_init, p: 1, device: tpu}", r"studies\[1\] .*: device='tpu': unknown device; allowed: auto, cpu, cuda"),
    ("{kind: at_init, p: 1, train_subset: -5}", r"studies\[1\] .*: train_subset=-5: expected an integer >= 1"),
    ('{kind: at_init, p: 1, keep_first: "no"}', r"studies\[1\] .*: keep_first='no': expected true or false"),
    ("{kind: at_init, p: 1, country: XXX}", r"studies\[1\] .*: country='XXX': codecarbon has no energy mix .*USA"),
    ("{kind: at_init, p: 1, lr: 0}", r"studies\[1\] .*: lr=0: expected a number > 0"),
    ("{kind: at_init, p: 1, epochs: null}", r"studies\[1\]: epochs: null is not a value; leave epochs out .*recipe"),
    ("{kind: at_init, p: 1, rounds: 0}", r"studies\[1\] .*: rounds=0: expected an integer >= 1"),
    ("{kind: at_init, p: 2, rounds: 3}", r"studies\[1\] .*: rounds=3 is not possible with p=2: allowed 1\.\.2"),
    ("{kind: at_init, p: 1, p: 2}", r"(?s)not valid YAML: .*found duplicate key 'p'.*line 4"),
]


@pytest.mark.parametrize("study,message", BAD_VALUES, ids=[s for s, _ in BAD_VALUES])
def test_bad_grid_values_are_named_before_ray(tmp_path, capsys, no_ray, study, message):
    assert run_cli(tmp_path, GRID % study) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_bad_country_flag_is_named_before_ray(tmp_path, capsys, no_ray):
    assert run_cli(tmp_path, GRID % "{kind: at_init, p: 1}", "--country", "XXX") == 2
    assert "country='XXX': codecarbon has no energy mix" in capsys.readouterr().err


def test_checks_follow_the_dataclass_so_new_fields_are_covered():
    @dataclass(frozen=True)
    class Extended:
        robustness: tuple = field(default=(), metadata={"help": "", "nargs": "*"})
        names: tuple[str, ...] = ()
        budget: float | None = None

    assert check_values(Extended, {"robustness": ["cifar10c", "pgd"], "names": ["a"], "budget": 2}) == {
        "robustness": ("cifar10c", "pgd"), "names": ("a",), "budget": 2.0}
    for bad, message in (({"robustness": "pgd"}, "robustness='pgd': expected a list"),
                         ({"names": [1]}, r"names=\[1\]: expected a list .* a string"),
                         ({"budget": "lots"}, "budget='lots': expected a number or null")):
        with pytest.raises(ValueError, match=message):
            check_values(Extended, bad)


# --- .npz files: layout, labels and load failures, one clear error each ----------------------------

def npz(tmp_path, **changes):
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8), "train_y": np.arange(20) % 2,
              "test_x": rng.integers(0, 256, (10, 3, 8, 8), dtype=np.uint8), "test_y": np.arange(10) % 2}
    path = tmp_path / "images.npz"
    np.savez(path, **(arrays | changes))
    return path


def truncated(tmp_path):
    path = npz(tmp_path)
    path.write_bytes(path.read_bytes()[:300])
    return path


def not_zip(tmp_path):
    path = tmp_path / "images.npz"
    path.write_text("train_x,train_y\n1,2\n")
    return path


BAD_NPZ = [
    ("nhwc", lambda t: npz(t, train_x=np.zeros((20, 8, 8, 3), np.uint8), test_x=np.zeros((10, 8, 8, 3), np.uint8)),
     r"train_x has shape \(20, 8, 8, 3\): channels \(1 or 3\) must be on axis 1.*transpose\(0, 3, 1, 2\)"),
    ("no channel axis", lambda t: npz(t, train_x=np.zeros((20, 8, 8), np.uint8)), r"train_x .*need a channel axis.*x\[:, None\]"),
    ("test label 57", lambda t: npz(t, test_y=np.array([0, 1] * 4 + [1, 57])), r"same classes; test_y adds \[57\]"),
    ("test lacks a class", lambda t: npz(t, test_y=np.zeros(10, np.int64)), r"same classes; test_y adds \[\] and lacks \[1\]"),
    ("float labels", lambda t: npz(t, train_y=np.arange(20) % 2 + 0.7), r"train_y is float64; labels must be integers"),
    ("negative labels", lambda t: npz(t, test_y=np.arange(10) % 2 - 1), r"test_y has negative labels \(min -1\)"),
    ("gap in classes", lambda t: npz(t, train_y=np.arange(20) % 2 * 2), r"train_y must use every class 0..C-1.*\[0, 2\]"),
    ("empty split", lambda t: npz(t, test_x=np.zeros((0, 3, 8, 8), np.uint8), test_y=np.zeros(0, np.int64)), r"test_x is empty"),
    ("float pixels", lambda t: npz(t, train_x=np.zeros((20, 3, 8, 8), np.float32)), r"train_x is float32; expected uint8"),
    ("one label short", lambda t: npz(t, train_y=np.arange(19) % 2), r"train_y has shape \(19,\); expected one label per image"),
    ("truncated", truncated, r"is not a readable .npz \(BadZipFile"),
    ("not a zip", not_zip, r"is not a readable .npz"),
]


@pytest.mark.parametrize("make,message", [c[1:] for c in BAD_NPZ], ids=[c[0] for c in BAD_NPZ])
def test_bad_npz_is_one_clear_error_also_from_the_grid_driver(tmp_path, capsys, no_ray, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message):
        load_dataset(str(path))
    grid = f"defaults: {{arch: resnet20, dataset: {path}, epochs: 1}}\nstudies:\n  - {{kind: dense}}\n"
    assert run_cli(tmp_path, grid) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err
    assert run_cli(tmp_path, grid, "--dry-run") == 2  # the cost estimate reads the file too


def test_good_npz_still_loads(tmp_path):
    data = load_dataset(str(npz(tmp_path)))
    assert data.num_classes == 2 and data.image_size == (3, 8, 8) and data.train_y.dtype == torch.int64


# --- one driver per sweep directory, unique experiment names --------------------------------------

def test_second_driver_exits_naming_the_holder(tmp_path, capsys, no_ray):
    root = tmp_path / "store" / "held"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from layerlth.sweep.lease.local import DriverLock; "
         "held = DriverLock(sys.argv[1]).__enter__(); print('held', flush=True); time.sleep(60)", str(root)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        grid = "name: held\ndefaults: {arch: resnet20, dataset: digits, epochs: 1}\nstudies:\n  - {kind: dense}\n"
        assert run_cli(tmp_path, grid) == 2
        err = capsys.readouterr().err
        assert f"another driver is running the sweep in {root} (pid {holder.pid} on host {os.uname().nodename}" in err
    finally:
        holder.kill()
        holder.wait()
    assert not (root / "trials").exists()


def test_experiment_names_are_unique_within_a_second():
    names = {runner.experiment_name("tickets") for _ in range(100)}
    assert len(names) == 100 and all(n.startswith(f"tickets-{time.strftime('%Y%m%d')}") for n in names)


# --- disk full: the driver notes what was not written and stops the experiment ---------------------

def full_disk(monkeypatch):
    """The store's records and tables written as on a full disk: the temporary file is written, then
    ENOSPC (the sweep's other files, such as Tune's, are written as usual)."""
    def write_atomic(path, write):
        if "/trials/" not in str(path) and Path(path).name not in ("results.csv", "results.parquet"):
            return checkpoints.write_atomic(path, write)

        def fails(handle):
            write(handle)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return checkpoints.write_atomic(path, fails)

    monkeypatch.setattr(storage_module, "write_atomic", write_atomic)


def test_full_disk_in_the_callback_stops_the_sweep_and_keeps_what_was_stored(tmp_path, monkeypatch):
    from layerlth.sweep.tune.callbacks import StopWhenStoreFails, StoreResults, failures

    store = SweepStore(tmp_path)
    store.save({"trial_id": "kept", "status": "finished"})
    full_disk(monkeypatch)
    trial = SimpleNamespace(config={"point": {"id": "lost", "trial": {"kind": "at_init"}}}, error_file=None,
                            get_error=lambda: RuntimeError("boom"), last_result={})
    callback, stopper = StoreResults(store), StopWhenStoreFails(tmp_path)
    failures(tmp_path).clear()
    assert not stopper.stop_all()
    callback.on_trial_error(0, [], trial)  # would raise ENOSPC into Tune and crash the driver
    assert stopper.stop_all()
    [(what, error)] = failures(tmp_path)
    assert "trial lost (errored)" in what and error.errno == errno.ENOSPC
    with pytest.raises(store_module.StoreFailed, match=r"(?s)trial lost.*No space left on device.*--resume"):
        runner.check_store(store)
    failures(tmp_path).clear()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["result.json"]  # no half-written file
    assert store.finished("kept")


# --- a finished trial stores itself before reporting; W&B's stall is counted and cleaned up --------

def test_trial_stores_its_record_before_reporting_and_counts_the_wandb_stall(tmp_path, monkeypatch):
    from ray import tune

    import layerlth.sweep.tune.trainable as tune_trial
    from layerlth.foundations.config import TrialConfig
    from layerlth.sweep import tracking

    trial = TrialConfig.from_dict({"kind": "at_init", "criterion": "snip", "p": 1, "dataset": "digits", "epochs": 1,
                                   "recipe": "he2016", "train_subset": 64, "score_batches": 1, "emissions": False,
                                   "device": "cpu", "dense_dir": str(tmp_path / "dense")})
    params = {"point": {"id": trial.hash(), "label": "t", "trial": trial.to_dict()},
              "sweep": {"name": "s", "root": str(tmp_path / "sweep"), "checkpoint_every": 1, "wandb_mode": "disabled",
                        "wandb_project": "layerlth"}}
    store = SweepStore(tmp_path / "sweep")
    reports = []

    def report(metrics, checkpoint=None):
        if "result_json" in metrics:  # the driver could die right after this: the record must be stored
            assert store.result(trial.hash()) == json.loads(metrics["result_json"])
        reports.append(metrics)

    def stalled_start(*args, **kwargs):  # a dead network: W&B waits for its timeout
        time.sleep(1.0)

    monkeypatch.setattr(tune, "report", report)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tracking, "start_run", stalled_start)
    tune_trial.trainable(params)
    stored = store.result(trial.hash())
    assert stored["status"] == "finished" and stored["wall_seconds"] >= 1.0 + stored["train_seconds"]

    monkeypatch.setattr(tune_trial, "trial_work", lambda *a, **k: pytest.fail("a stored trial trained again"))
    tune_trial.trainable(params)  # what a resumed sweep does: the stored record is reported as it is
    assert json.loads(reports[-1]["result_json"]) == stored


def test_failed_online_wandb_run_leaves_no_folder(tmp_path, monkeypatch):
    from layerlth.foundations.config import TrialConfig
    from layerlth.sweep import tracking

    monkeypatch.setenv("WANDB_API_KEY", "f" * 40)  # a key, but no server answers
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setattr(tracking, "INIT_TIMEOUT", 2)
    run = tracking.start_run(TrialConfig(), "group", "online", "layerlth", directory=str(tmp_path / "runs"))
    run.finish()
    folders = sorted(p.name for p in (tmp_path / "runs" / "wandb").iterdir() if p.is_dir() and not p.is_symlink())
    assert run.offline and len(folders) == 1 and folders[0].startswith("offline-run-"), folders
