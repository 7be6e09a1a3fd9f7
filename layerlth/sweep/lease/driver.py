"""One driver per sweep on an object store, where no file lock reaches: a lease object,
`<root>/.driver-lease.json`, naming the holder (host, pid, since) with a heartbeat that a daemon
thread rewrites every `heartbeat` seconds. A second driver that finds a fresh heartbeat exits
naming the holder; one that finds a heartbeat older than STALE_AFTER beats (the holder died
without releasing) takes the lease over and says from whom. Every write is conditional on the
version last read (`objects.lease_object`), so a driver whose lease was taken over notices at its next beat.

Staleness compares the holder's clock with the reader's: the drivers' hosts must agree on the time
to well within a heartbeat (NTP does). `one_driver` picks this lease or the local `DriverLock`.
"""

import _thread
import logging
import os
import signal
import socket
import threading
import time

from layerlth.sweep.lease.local import DriverLock, SweepBusy, busy
from layerlth.sweep.lease.objects import lease_object

log = logging.getLogger("layerlth")
LEASE = ".driver-lease.json"
HEARTBEAT_SECONDS = 30
STALE_AFTER = 3  # missed beats before a lease counts as abandoned


class LeaseLost(SweepBusy):
    """Another driver took this driver's lease: two drivers now run the sweep."""


def died_here(who):
    """A holder on this host whose process is gone (a killed driver relaunched here need not wait
    out its heartbeats)."""
    if who.get("host") != socket.gethostname() or not isinstance(who.get("pid"), int):
        return False
    try:
        os.kill(who["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def one_driver(root, heartbeat=HEARTBEAT_SECONDS):
    """The guard that keeps a second driver off the sweep in `root` (a Storage)."""
    return DriverLock(root.location) if root.local else DriverLease(root, heartbeat)


def stop_main_thread():
    """As Ctrl-C would: Tune stops the experiment (trials keep their checkpoints), and anywhere
    else the driver unwinds; DriverLease.__exit__ turns it into LeaseLost."""
    _thread.interrupt_main(signal.SIGINT)


class DriverLease:
    def __init__(self, root, heartbeat=HEARTBEAT_SECONDS, on_lost=stop_main_thread):
        self.root, self.heartbeat, self.on_lost = root, heartbeat, on_lost
        self.object = lease_object(root, LEASE)
        self.me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   "heartbeat_seconds": heartbeat}
        self.tag, self.lost = None, None
        self._stop = threading.Event()
        self._beats = threading.Thread(target=self._beat, name="driver-lease", daemon=True)

    def body(self):
        return {**self.me, "heartbeat": time.time()}

    def __enter__(self):
        self.tag = self._acquire()
        self._beats.start()
        return self

    def _acquire(self):
        for _ in range(3):  # the lease can vanish or change between the reads and writes below
            tag = self.object.create(self.body())
            if tag:
                return tag
            who, seen = self.object.read()
            if who is None:
                continue  # released meanwhile: try to create it again
            age = time.time() - who.get("heartbeat", 0)
            fresh = age <= STALE_AFTER * who.get("heartbeat_seconds", HEARTBEAT_SECONDS)
            if fresh and not died_here(who):
                raise busy(self.root.location, who, f", last heartbeat {age:.0f} s ago")
            tag = self.object.replace(self.body(), seen)
            if tag:
                self._took_over(who, age, "its process is gone" if fresh else f"more than {STALE_AFTER} beats")
                return tag
        raise busy(self.root.location, self.object.read()[0])

    def _took_over(self, who, age, why):
        holder = (f"pid {who.get('pid')} on host {who.get('host')}, since {who.get('since')}" if who
                  else "an unreadable lease")
        message = (f"taking over the sweep in {self.root.location} from {holder}: its last heartbeat was "
                   f"{age:.0f} s ago ({why})")
        print(message, flush=True)
        log.warning(message)

    def _beat(self):
        while not self._stop.wait(self.heartbeat):
            try:
                tag = self.object.replace(self.body(), self.tag)
            except Exception as error:  # a network hiccup: the next beat tries again
                log.warning("could not renew the driver lease %s: %s", self.object.uri, error)
                continue
            if tag is None:
                self._lose()
                return
            self.tag = tag

    def _lose(self):
        who = self.object.read()[0]
        holder = f"pid {who.get('pid')} on host {who.get('host')}" if who else "nobody (the lease was deleted)"
        self.lost = (f"this driver lost its lease on the sweep in {self.root.location} to {holder}: it missed its "
                     f"heartbeats for too long, and two drivers would now race for the same trials; stopping")
        log.error(self.lost)
        self.on_lost()

    def check(self):
        """LeaseLost when another driver has taken the lease."""
        if self.lost:
            raise LeaseLost(self.lost)

    def __exit__(self, kind, error, trace):
        self._stop.set()
        if self._beats.is_alive():
            self._beats.join()
        if self.lost:
            if kind is None or issubclass(kind, KeyboardInterrupt):
                raise LeaseLost(self.lost) from error
            return False
        self.object.delete(self.tag)
        return False
