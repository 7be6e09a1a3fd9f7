"""Packs: k trials trained by one process on one device, side by side.

A trial is written as a generator (`layerlth.tickets.trial.trial_work`): it does its own setup (data, net,
scores, surgery), yields each `train.Run` it needs trained, and returns its result row once the
run is over. A pack keeps up to `slots` trials going: every tick it steps each member's run by one
batch (a run at its epoch's end evaluates and calls its callbacks instead), so each member keeps
its own net, optimizer, data order, augmentation, callbacks and checkpoints, and computes exactly
what it computes alone. On CUDA with graphed steps each member replays its graph on its own
stream, so the GPU runs the members' steps at once; on a CPU (or eager on CUDA) they run one after
another: no speed-up, the same code. Members that asked for fusion and share an architecture and
recipe train as one fused step instead (`training.fusion`), each still with its own batches,
learning rate, callbacks and checkpoints.

A member that finishes, stops early or fails (an exception, a NaN loss) leaves the pack at once
and the others go on; its slot is refilled from the work source (continuous packing). The energy
of the machine is split among the members by their images x MACs: the pack is given the split
(`energy`, `measure.emissions.EnergySplit` for trials) and each run's `terms.energy`, and records
each run's share in its report; the engine itself imports no measurement. `run_trial` is a pack of
one.
"""

import logging
import time
from dataclasses import dataclass

from layerlth.training.packs.fusion import Fusion

log = logging.getLogger("layerlth")
IDLE_POLL_SECONDS = 0.5  # how often an empty pack asks its source for work that is not ready yet


@dataclass
class Finished:
    """A member that left the pack: its result row, or the exception that ended it."""
    key: object
    result: dict | None = None
    error: BaseException | None = None


class Works:
    """A fixed list of (key, trial generator) as a work source. A source has `take(n)` (at most n
    items now) and `exhausted()` (nothing will ever come); the sweep's source asks the driver."""

    def __init__(self, items):
        self.items = list(items)

    def take(self, n):
        taken, self.items = self.items[:n], self.items[n:]
        return taken

    def exhausted(self):
        return not self.items


class _Member:
    def __init__(self, key, work):
        self.key, self.work, self.run = key, work, None


class Unmetered:
    """An energy split that meters nothing (a pack given none): every run's energy is None."""

    def join(self, run, terms):
        return {run: {"energy_kwh": None, "co2_kg": None, "gpu_share": terms.gpu_share,
                      "emissions_method": "disabled"}}

    def settle(self):
        return {}

    def leave(self, run):
        return {}

    def close(self):
        pass


class Pack:
    def __init__(self, slots, log_failures=True, energy=Unmetered):
        """`log_failures`: log each member's failure as it leaves (a pack of one raises it to its
        caller instead, who reports it: logged here too, the user would read it twice). `energy`
        makes the pack's energy split (`measure.emissions.EnergySplit`): `join(run, terms)`,
        `settle()`, `leave(run)` each return {run: its energy so far}; `close()`."""
        if slots < 1:
            raise ValueError(f"a pack needs at least 1 slot, got {slots}")
        self.slots, self.log_failures, self.energy = slots, log_failures, energy
        self.fusion = Fusion()

    def run(self, source):
        """Train what `source` hands out, `slots` at a time; yield a `Finished` per member as it leaves."""
        source = source if hasattr(source, "take") else Works(source)
        active, energy = [], Metering(self.energy())
        try:
            while True:
                for key, work in source.take(self.slots - len(active)) if len(active) < self.slots else ():
                    member = _Member(key, work)
                    finished = self._next_run(member, energy)
                    if finished:
                        yield finished
                    else:
                        active.append(member)
                if not active:
                    if source.exhausted():
                        return
                    time.sleep(IDLE_POLL_SECONDS)
                    continue
                fused = self.fusion.tick([m.run for m in active if m.run is not None])
                for member in list(active):
                    if id(member.run) in fused:  # stepped in a fused group, or waiting to join one
                        continue
                    finished = self._tick(member, energy)
                    if finished:
                        active.remove(member)
                        yield finished
        finally:
            for member in active:  # the pack was stopped: close each trial (its locks, its files)
                member.work.close()
            energy.close()

    def _tick(self, member, energy):
        """One step of the member's run; when the run is over, the member's next run or its end."""
        try:
            if member.run.step():
                return None
        except Exception as error:  # noqa: BLE001 - a member's failure is its own, not the pack's
            return self._next_run(member, energy, error)
        return self._next_run(member, energy)

    def _next_run(self, member, energy, error=None):
        """Advance the member's trial to its next run (started here), or to its end: a `Finished`."""
        while True:
            if member.run is not None:
                energy.leave(member.run)
                member.run = None
            try:
                run = member.work.throw(error) if error else next(member.work)
            except StopIteration as stop:
                return Finished(member.key, result=stop.value)
            except Exception as failure:  # noqa: BLE001
                if self.log_failures:
                    log.error("pack member %s failed: %s: %s", member.key, type(failure).__name__, failure)
                return Finished(member.key, error=failure)
            member.run, error = run, None
            energy.join(run)
            try:
                run.begin(before_callbacks=energy.settle)
                return None
            except Exception as failure:  # noqa: BLE001
                error = failure


class Metering:
    """The pack's split and its runs: each reading recorded in the runs' reports, and the most runs
    that shared the process with each."""

    def __init__(self, split):
        self.split, self.runs = split, []

    def join(self, run):
        self.runs.append(run)
        self._record(self.split.join(run, run.terms.energy))
        for other in self.runs:
            other.report.shares_process(len(self.runs))

    def settle(self):
        self._record(self.split.settle())

    def leave(self, run):
        self.runs.remove(run)
        self._record(self.split.leave(run))

    def close(self):
        self.split.close()

    @staticmethod
    def _record(energies):
        for run, energy in energies.items():
            run.report.metered(energy)


def run_alone(work, energy=Unmetered):
    """A trial generator trained by a pack of one: its result, or its exception raised."""
    [finished] = Pack(1, log_failures=False, energy=energy).run([(None, work)])
    if finished.error is not None:
        raise finished.error
    return finished.result
