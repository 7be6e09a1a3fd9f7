"""A sweep on a real two-node Ray cluster (a head and a worker node, separate `ray start` processes
on this machine, each with its own temp dir) whose only shared storage is a local S3-compatible
server: trials land on both nodes, Algorithm 1 tickets read their dense run from the bucket,
killing the worker node mid-trial makes Tune retry the trial on the head from its checkpoint, and
a killed driver's sweep finishes with --resume, every trial once."""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from s3_server import free_port, s3_server

from layerlth.foundations.storage import Storage

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
EPOCHS = 20  # trials of a few seconds: the worker node's first trial starts before the head's run out
GRID = f"""
name: cluster
defaults: {{dataset: digits, arch: resnet20, recipe: he2016, epochs: {EPOCHS}, score_batches: 1, emissions: false}}
studies:
  - {{kind: dense}}
  - {{kind: after_training, criterion: kl, p: 1, rewind: [0, 2]}}
  - {{kind: at_init, criterion: [snip, grasp], p: 1}}
  - {{kind: filter, criterion: grasp, p: 1}}
"""
SWEEP = "s3://layerlth/sweeps/cluster"


def node_ids(env, address):
    """{"head": id, "worker": id} of the alive nodes, once both are up."""
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
            "print(json.dumps({('head' if 'node:__internal_head__' in n['Resources'] else 'worker'): n['NodeID'] "
            "for n in ray.nodes() if n['Alive']}))" % address)
    deadline = time.time() + 90
    while time.time() < deadline:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        found = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else {}
        if len(found) == 2:
            return found
        time.sleep(1)
    pytest.fail(f"the two-node cluster did not come up: {out.stderr[-2000:]}")


def kill_node(temp_dir, group=None):
    """SIGKILL a node started here: its `ray start --block` process group and every process whose
    command line names the node's own temp dir (raylet, GCS, agents)."""
    if group is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if temp_dir.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)


def latest_checkpoints(storage):
    """{trial id: (epoch, node that wrote it)} of each unfinished trial's newest Tune checkpoint."""
    found = {}
    for name in storage.glob("tune/*/*/checkpoint_*/state.pt"):
        trial = name.split("/")[2]
        if storage.exists(f"trials/{trial}/result.json") or name < found.get(trial, ("",))[0]:
            continue
        try:
            state = torch.load(io.BytesIO(storage.read_bytes(name)), map_location="cpu", weights_only=True)
        except (FileNotFoundError, OSError, RuntimeError):
            continue  # pruned or half-listed meanwhile
        found[trial] = (name, state["epoch"], state["context"]["attempt_nodes"][-1])
    return {t: (epoch, node) for t, (_, epoch, node) in found.items()}


def wait_for(condition, what, log, timeout=150):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting until {what}:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_two_node_sweep_on_s3_survives_a_dead_worker_and_a_dead_driver(tmp_path):
    grid = tmp_path / "cluster.yaml"
    grid.write_text(GRID)
    with s3_server() as s3:
        # every node imports this checkout (as a cluster has the package installed on every node)
        # Tune snapshots the experiment every second, so the resume sees the retried trial's checkpoint
        env = dict(os.environ, **s3, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0",
                   TUNE_GLOBAL_CHECKPOINT_S="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        os.environ.update(s3)  # this process reads the bucket too
        port = free_port()
        address = f"127.0.0.1:{port}"
        head_tmp, worker_tmp = (tempfile.mkdtemp(prefix=p, dir="/tmp") for p in ("rh", "rw"))
        worker = driver = None
        try:
            subprocess.run([RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                            "--num-cpus", "1", "--include-dashboard", "false", "--temp-dir", head_tmp],
                           env=env, check=True, capture_output=True, timeout=120)
            ports = [str(free_port()) for _ in range(5)]  # the head holds the default ones
            worker = subprocess.Popen(
                [RAY, "start", "--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                 "--temp-dir", worker_tmp, "--block", "--dashboard-agent-listen-port", ports[0],
                 "--dashboard-agent-grpc-port", ports[1], "--runtime-env-agent-port", ports[2],
                 "--metrics-export-port", ports[3], "--node-manager-port", ports[4]],
                env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            nodes = node_ids(env, address)
            name = {v: k for k, v in nodes.items()}
            bucket = Storage(SWEEP)
            argv = [sys.executable, str(ROOT / "sweeps" / "run.py"), "--grid", str(grid), "--address", address,
                    "--storage", "s3://layerlth/sweeps", "--no-wandb", "--max-failures", "3"]
            log = tmp_path / "driver.log"
            driver = subprocess.Popen(argv, env=env, cwd=tmp_path, start_new_session=True,
                                      stdout=log.open("w"), stderr=subprocess.STDOUT)

            # 1. the worker node dies while one of its trials is part-way, past a checkpoint
            victim = wait_for(lambda: next((t for t, (epoch, node) in latest_checkpoints(bucket).items()
                                            if node == nodes["worker"] and epoch >= 1), None),
                              "a trial on the worker node has checkpointed", log)
            kill_node(worker_tmp, worker.pid)
            worker.wait()
            # 2. the driver dies once the sweep went on without the worker
            wait_for(lambda: bucket.exists(f"trials/{victim}/result.json") or any(
                node == nodes["head"] and t == victim for t, (_, node) in latest_checkpoints(bucket).items()),
                "the killed trial went on on the head node", log)
            time.sleep(3)  # a few experiment snapshots later
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
            driver = None
            before = {n: bucket.read_bytes(n) for n in bucket.glob("trials/*/result.json")}

            # 3. the sweep is resumed from the bucket and finishes
            resumed = subprocess.run([*argv, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True,
                                     timeout=240)
            assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
            assert f"resuming {SWEEP}: " in resumed.stdout
        finally:
            if driver is not None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
            kill_node(worker_tmp, worker.pid if worker else None)
            kill_node(head_tmp)
            for directory in (head_tmp, worker_tmp):
                shutil.rmtree(directory, ignore_errors=True)

        rows = {r["trial_id"]: r for r in (bucket.read_json(n) for n in bucket.glob("trials/*/result.json"))}
        table = pd.read_csv(io.BytesIO(bucket.read_bytes("results.csv")))
        assert len(rows) == 6 and sorted(table["trial_id"]) == sorted(rows)  # every trial, once
        assert all(r["status"] == "finished" for r in rows.values())
        for n, text in before.items():  # trials finished before the driver died were not rerun
            earlier, now = json.loads(text), bucket.read_json(n)
            if earlier.get("cka_vs_dense") is None:  # a ticket done before its dense run: the driver fills it in
                now["cka_vs_dense"] = None
            assert {k: (earlier.get(k), now.get(k)) for k in earlier.keys() | now.keys()
                    if earlier.get(k) != now.get(k)} == {}, n
        print("\nwhich node ran which trial (attempts, from epoch):")
        for r in sorted(rows.values(), key=lambda r: r["kind"]):
            print(f"  {r['kind']:<15}{r['criterion'] if r['p'] else '-':<6}{r['trial_id']}  "
                  + ", ".join(f"{name.get(n, n)} from {e}" for n, e in zip(r["attempt_nodes"], r["attempt_start_epochs"])))
        first_nodes = {name.get(r["attempt_nodes"][0]) for r in rows.values()}
        assert first_nodes == {"head", "worker"}, first_nodes  # trials landed on both nodes
        retried = rows[victim]
        assert [name.get(n) for n in retried["attempt_nodes"][:2]] == ["worker", "head"], retried["attempt_nodes"]
        assert retried["attempt_start_epochs"][1] >= 1 and retried["epochs_trained"] == EPOCHS - retried["start_epoch"]
        tickets = [r for r in rows.values() if r["kind"] == "after_training"]
        dense_key = next(r for r in rows.values() if r["kind"] == "dense")["dense_run"].rsplit("/", 1)[1]
        assert len(tickets) == 2 and all(r["dense_run"] == f"{SWEEP}/dense/{dense_key}" for r in tickets)
        assert bucket.exists(f"dense/{dense_key}/weights_epoch2.pt")  # rewind point 2 of 20 epochs
        assert not any((tmp_path / d).exists() for d in ("results", "dense", "trials"))  # nothing shared locally
