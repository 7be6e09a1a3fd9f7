"""The Tune searcher that hands out a sweep's trials without a phase barrier: dense, at-init and
filter trials at once, an after-training ticket as soon as its own dense run is stored, and one
trial at a time per dense run (its owner), on whichever node Tune places it (`jobs.jobs`)."""

import time

from ray.tune.search import Searcher

from layerlth.foundations.recipes import training_recipe
from layerlth.sweep.jobs import ready
from layerlth.tickets.dense_runs import DenseRun

# how often a waiting ticket looks for its dense run in storage, besides when a dense trial ends
RECHECK_SECONDS = 30


class DenseRunGate(Searcher):
    def __init__(self, job_list, params):
        """`params[i]` is the Tune config of `job_list[i]`."""
        super().__init__()
        self.jobs, self.params = list(job_list), list(params)
        self.pending = list(range(len(self.jobs)))
        self.running = {}  # Tune trial id -> job index
        self.stored, self.checked = set(), 0.0
        self._recheck()

    def _stored(self, job):
        return DenseRun(job.config, training_recipe(job.config).epochs).complete()

    def _recheck(self):
        """Dense runs stored meanwhile (by an earlier sweep, or a dense trial Tune has not reported)."""
        self.checked = time.monotonic()
        waited = {self.jobs[i].needs: self.jobs[i] for i in self.pending if self.jobs[i].needs}
        owners = {self.jobs[i].owns: self.jobs[i] for i in self.pending if self.jobs[i].owns}
        for key in set(waited) - self.stored:
            if self._stored(owners.get(key) or waited[key]):
                self.stored.add(key)

    def in_flight(self):
        return {self.jobs[i].owns for i in self.running.values() if self.jobs[i].owns}

    def suggest(self, trial_id):
        if time.monotonic() - self.checked > RECHECK_SECONDS:
            self._recheck()
        in_flight = self.in_flight()
        for i in self.pending:
            if ready(self.jobs[i], self.stored, in_flight):
                self.pending.remove(i)
                self.running[trial_id] = i
                return self.params[i]
        orphans = self.orphans()  # their dense trial errored: the driver records them as not run
        self.pending = [i for i in self.pending if i not in orphans]
        return None if self.pending else Searcher.FINISHED

    def orphans(self):
        """Pending tickets whose dense run is not stored and that no pending or running trial trains."""
        trained = {self.jobs[i].owns for i in [*self.pending, *self.running.values()] if self.jobs[i].owns}
        return {i for i in self.pending if self.jobs[i].needs and self.jobs[i].needs not in self.stored | trained}

    def on_trial_complete(self, trial_id, result=None, error=False):
        i = self.running.pop(trial_id, None)
        if i is not None and self.jobs[i].owns and self._stored(self.jobs[i]):
            self.stored.add(self.jobs[i].owns)

    def save(self, checkpoint_path):
        """Nothing to save: a relaunch rebuilds the gate from the grid and the stored records."""

    def restore(self, checkpoint_path):
        raise NotImplementedError("layerlth never restores a pickled searcher: relaunch the grid (--resume), "
                                  "which rebuilds what is left from the stored records")
