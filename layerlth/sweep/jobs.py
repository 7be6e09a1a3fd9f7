"""What a sweep's trials wait for, and how long the sweep takes on N slots.

Only after-training tickets read a dense run: each waits until its dense run is stored, and the
dense trial that trains a run is its one owner (two trials of one dense run never train at once,
on any node). Dense, at-init and filter trials start at once. `simulate` plays this schedule, or
the two-phase one (every dense run first, then every ticket), on N slots given each trial's
duration, so the two can be compared before a sweep runs (`sweeps/run.py --dry-run --slots N`).
"""

import functools
import heapq
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    label: str
    config: object  # TrialConfig
    owns: str | None = None  # the dense run this trial trains, when it is stored yet
    needs: str | None = None  # the dense run this trial reads

    @property
    def priority(self):
        """Dense runs first (they release tickets), then released after-training tickets (the
        longer chain), then the rest; grid order within each."""
        return 0 if self.owns else 1 if self.needs else 2


def jobs(entries):
    """Every trial of the grid plus, for after-training tickets whose dense run is not a trial of
    the grid, a dense trial that trains it; dense runs first."""
    result = [Job(label, c, owns=c.dense_key()) for label, c in entries if c.is_dense]
    owned = {job.owns for job in result}
    for label, config in entries:
        if reads_dense_run(config) and config.dense_key() not in owned:
            owned.add(config.dense_key())
            result.append(Job(f"dense run for {label}", config.dense_config(), owns=config.dense_key()))
    result += [Job(label, c, needs=c.dense_key() if reads_dense_run(c) else None)
               for label, c in entries if not c.is_dense]
    return sorted(result, key=lambda job: job.priority)  # stable: grid order within a priority


def reads_dense_run(config):
    return config.kind == "after_training" and not config.is_dense


def ready(job, stored, in_flight):
    """May `job` start, given the dense runs stored and the dense runs being trained?"""
    if job.needs:
        return job.needs in stored
    return not job.owns or job.owns not in in_flight


@dataclass
class Schedule:
    slots: int
    barrier: bool
    hours: float  # from the first start to the last end
    busy: float  # share of the slot-hours spent training
    waves: float  # hours / the median trial's hours
    starts: list  # start hour of each job, in the order given
    ends: list  # end hour of each job


def simulate(job_list, slots, duration, barrier=False):
    """List scheduling of `job_list` on `slots` equal slots; `duration(config)` gives seconds.
    With `barrier`, tickets start only when every dense run is stored."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    seconds = [0.0 if _reuses(job, job_list[:i]) else float(duration(job.config)) for i, job in enumerate(job_list)]
    pending = list(range(len(job_list)))
    running, stored, in_flight = [], set(), set()
    starts, ends = [0.0] * len(job_list), [0.0] * len(job_list)
    owners_left = sum(1 for job in job_list if job.owns)
    now = 0.0
    while pending or running:
        for i in list(pending):
            if len(running) == slots:
                break
            job = job_list[i]
            if (barrier and not job.owns and owners_left) or not ready(job, stored, in_flight):
                continue
            pending.remove(i)
            starts[i] = now / 3600
            heapq.heappush(running, (now + seconds[i], i))
            if job.owns:
                in_flight.add(job.owns)
        if not running:
            raise ValueError(f"{len(pending)} trials wait for dense runs no trial trains, e.g. {job_list[pending[0]].label}")
        now, i = heapq.heappop(running)
        job = job_list[i]
        ends[i] = now / 3600
        if job.owns:
            in_flight.discard(job.owns)
            stored.add(job.owns)
            owners_left -= 1
    hours = now / 3600
    typical = statistics.median(s for s in seconds if s) / 3600 if any(seconds) else 0.0
    return Schedule(slots, barrier, hours, sum(seconds) / 3600 / (slots * hours) if hours else 1.0,
                    hours / typical if typical else 0.0, starts, ends)


def _reuses(job, earlier):
    """A second dense trial of one dense run reads the stored run instead of training."""
    return bool(job.owns) and any(other.owns == job.owns for other in earlier)


def flops_duration(tflops):
    """Trial seconds from the dry run's FLOP estimate at `tflops` sustained per slot."""
    from layerlth.sweep.estimate import trial_cost

    @functools.lru_cache(maxsize=None)
    def seconds(config):
        return trial_cost(config)[1] / (tflops * 1e12)

    return seconds


def schedule_table(entries, slot_counts, duration):
    """One line per slot count: hours and waves with and without the phase barrier."""
    job_list = jobs(entries)
    lines = [f"schedule of {len(job_list)} trials ({len(job_list) - len(entries)} dense runs added for tickets):",
             f"{'slots':>6}{'no barrier':>12}{'waves':>7}{'busy':>6}{'barrier':>10}{'waves':>7}{'busy':>6}"]
    for slots in slot_counts:
        free, phased = simulate(job_list, slots, duration), simulate(job_list, slots, duration, barrier=True)
        lines.append(f"{slots:>6}{free.hours:>10.1f} h{free.waves:>7.1f}{free.busy:>6.0%}"
                     f"{phased.hours:>8.1f} h{phased.waves:>7.1f}{phased.busy:>6.0%}")
    return "\n".join(lines)
