"""One driver per sweep directory: a second one on the same results would train every trial again
and race the first for its files. The holder writes who it is beside the lock, so the second
driver's message can name it."""

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from layerlth.foundations.atomic import write_json_atomic


class SweepBusy(RuntimeError):
    """Another driver holds the sweep directory."""


def busy(root, who, detail=""):
    """SweepBusy naming the driver `who` (its lease or .driver.json, None when it did not say)."""
    named = (f"pid {who.get('pid')} on host {who.get('host')}, since {who.get('since')}{detail}" if who
             else "a process that has not said who it is")
    return SweepBusy(f"another driver is running the sweep in {root} ({named}); wait for it to end, "
                     f"or give this one another --name / --results-dir")


class DriverLock:
    def __init__(self, root, wait=0):
        self.root, self.wait = Path(root), wait
        self.lock = FileLock(str(self.root / ".driver.lock"))
        self.holder_path = self.root / ".driver.json"

    def holder(self):
        try:
            return json.loads(self.holder_path.read_text())
        except (OSError, ValueError):
            return None

    def __enter__(self):
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire(timeout=self.wait)
        except Timeout:
            raise busy(self.root, self.holder()) from None
        try:
            write_json_atomic({"pid": os.getpid(), "host": socket.gethostname(),
                               "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}, self.holder_path)
        except OSError:
            self.lock.release()
            raise
        return self

    def check(self):
        """Nothing to check: a file lock is held until released (DriverLease.check can fail)."""

    def __exit__(self, *exc):
        self.holder_path.unlink(missing_ok=True)
        self.lock.release()
        return False
