"""The GPU suite's frame: a hard budget, each stage's cap (its share of the time left), the summary
rewritten atomically after every step, and a watchdog that ends the run at the budget."""

import datetime
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from suite_report import markdown

# The CUDA tests come first and have time of their own (TESTS_S, at most what the budget leaves): they
# run whole, never squeezed by a share. Each later stage gets its share of the time still left when
# it starts (a stage that ends early leaves its time to the later ones).
TESTS_S = 120
SHARES = {"throughput": 0.12, "engines": 0.18, "speedup": 0.06, "packing": 0.16, "fusion": 0.20,
          "imagenet": 0.10, "record": 0.10}
STAGES = ("tests", *SHARES)
RESERVE_S = 5.0  # kept back from the stages for the last summary


class Capped(BaseException):
    """A stage reached its cap (a BaseException, so that no `except Exception` in a stage holds it)."""


class Skipped(Exception):
    """A stage with nothing to do here; its message says why."""


def write_atomic(path, text):
    """`text` into `path` through layerlth's atomic writer: never a half-written summary."""
    from layerlth.foundations.atomic import (
        write_atomic as write,  # after `import common` put layerlth on the path
    )

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
    """The run's budget, its stages' caps, the summary files and the watchdog; `runners` maps each
    stage to its function (suite, its result dict) -> status."""

    def __init__(self, args, runners):
        self.runners = runners
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
        if stage == "tests":
            return min(TESTS_S, left)
        return left * SHARES[stage] / sum(SHARES[s] for s in later if s in SHARES)

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
                entry["status"] = self.runners[name](self, entry["result"]) or "ok"
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


