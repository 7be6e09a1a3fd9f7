"""One driver per sweep on an object store: the lease on a local S3-compatible server (moto), with
heartbeats of a fraction of a second so that staleness and takeovers take no time."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from s3_server import s3_server

import layerlth.sweep.runner as runner
from layerlth.foundations.storage import Storage
from layerlth.sweep.lease.driver import LEASE, DriverLease, LeaseLost
from layerlth.sweep.lease.local import SweepBusy
from layerlth.sweep.lease.objects import S3Object

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import run as sweep_cli  # noqa: E402


@pytest.fixture(scope="module")
def s3_env():
    with s3_server() as env:
        yield env


@pytest.fixture
def sweep(s3_env, monkeypatch, request):
    """A sweep root of its own in the bucket."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    return Storage(f"s3://layerlth/{request.node.name}")


def holder(sweep):
    """The lease as the drivers read it: one GET (pyarrow's reads can straddle a heartbeat's rewrite)."""
    return S3Object(sweep.path(LEASE)).read()[0]


def never_lost():
    pytest.fail("a driver lost a lease nobody took")


def test_second_driver_on_an_s3_sweep_exits_naming_the_holder(sweep, s3_env, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "start_ray", lambda args: pytest.fail("Ray started for a held sweep"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from layerlth.foundations.storage import Storage; "
         "from layerlth.sweep.lease.driver import DriverLease; "
         "DriverLease(Storage(sys.argv[1]), heartbeat=0.2).__enter__(); print('held', flush=True); time.sleep(60)",
         sweep.location], stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **s3_env})
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(0.5)  # beats go on: the lease stays fresh
        grid = tmp_path / "grid.yaml"
        grid.write_text("defaults: {arch: resnet20, dataset: digits, epochs: 1}\nstudies:\n  - {kind: dense}\n")
        assert sweep_cli.main(["--grid", str(grid), "--no-wandb", "--results-dir", sweep.location]) == 2
        err = capsys.readouterr().err
        assert (f"another driver is running the sweep in {sweep.location} (pid {holder.pid} on host "
                f"{socket.gethostname()}, since ") in err, err
    finally:
        holder.kill()
        holder.wait()
    assert sweep.glob("trials/*/result.json") == []


def test_stale_lease_is_taken_over_naming_the_old_holder_and_released(sweep, capsys):
    dead = {"pid": 4242, "host": "gone-host", "since": "yesterday", "heartbeat_seconds": 1,
            "heartbeat": time.time() - 10}
    sweep.write_json(LEASE, dead)
    with DriverLease(sweep, heartbeat=0.05, on_lost=never_lost) as lease:
        assert f"taking over the sweep in {sweep.location} from pid 4242 on host gone-host" in capsys.readouterr().out
        first = holder(sweep)
        time.sleep(0.3)
        beat = holder(sweep)
        assert beat["pid"] == os.getpid() and beat["heartbeat"] > first["heartbeat"]
        lease.check()
    assert not sweep.exists(LEASE)


def test_fresh_lease_of_a_dead_driver_on_this_host_is_taken_over(sweep, capsys):
    """A killed driver relaunched on its host (--resume) need not wait out the old heartbeats."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    sweep.write_json(LEASE, {"pid": gone.pid, "host": socket.gethostname(), "since": "now", "heartbeat": time.time(),
                             "heartbeat_seconds": 30})
    with DriverLease(sweep, heartbeat=0.05, on_lost=never_lost):
        out = capsys.readouterr().out
        assert f"from pid {gone.pid} on host {socket.gethostname()}" in out and "(its process is gone)" in out
        assert holder(sweep)["pid"] == os.getpid()


def test_fresh_lease_is_not_taken_over(sweep):
    with DriverLease(sweep, heartbeat=0.05, on_lost=never_lost):
        with pytest.raises(SweepBusy, match=rf"pid {os.getpid()} on host .*last heartbeat 0 s ago"):
            DriverLease(sweep, heartbeat=0.05).__enter__()
        assert holder(sweep)["pid"] == os.getpid()


def test_driver_whose_lease_was_taken_says_so_and_stops(sweep, caplog):
    lost = threading.Event()
    lease = DriverLease(sweep, heartbeat=0.05, on_lost=lost.set)
    with pytest.raises(LeaseLost, match="lost its lease on the sweep .* to pid 99 on host other-host"):
        with lease:
            sweep.write_json(LEASE, {"pid": 99, "host": "other-host", "since": "now", "heartbeat": time.time(),
                                     "heartbeat_seconds": 30})  # another driver took it over
            assert lost.wait(5)
            with pytest.raises(LeaseLost):
                lease.check()
    assert "lost its lease" in caplog.text
    assert holder(sweep)["pid"] == 99  # the new holder's lease stays


def test_drivers_racing_for_the_lease_exactly_one_wins(sweep):
    # beats slow enough that no loaded machine lets the winner's lease look stale mid-race
    leases = [DriverLease(sweep, heartbeat=2, on_lost=never_lost) for _ in range(8)]
    start, outcomes = threading.Barrier(len(leases)), []

    def race(lease):
        start.wait()
        try:
            lease.__enter__()
            outcomes.append(lease)
        except SweepBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "busy"]
    assert len(outcomes) == 8 and len(winners) == 1
    winners[0]._stop.set()  # a beat between the read and the compare would change the tag
    winners[0]._beats.join()
    assert S3Object(sweep.path(LEASE)).read()[1] == winners[0].tag
    winners[0].__exit__(None, None, None)
    assert not sweep.exists(LEASE)


def test_plain_lease_without_conditional_writes(tmp_path):
    """Stores without conditional writes (gs://, ...) read, then write: still one driver at a time
    when they do not start within the same moment."""
    root = Storage(tmp_path / "sweep")
    with DriverLease(root, heartbeat=0.05, on_lost=never_lost):
        assert json.loads((tmp_path / "sweep" / LEASE).read_text())["pid"] == os.getpid()
        with pytest.raises(SweepBusy, match="another driver is running the sweep"):
            DriverLease(root, heartbeat=0.05).__enter__()
    assert not (tmp_path / "sweep" / LEASE).exists()
