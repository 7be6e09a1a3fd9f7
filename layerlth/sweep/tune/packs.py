"""`--trials-per-gpu k`: each Tune trial is a packing worker that trains up to k of the sweep's
trials at once in one process on its device (`layerlth.training.packs.pack`), refilled as members leave.

The sweep's own searcher (the dense-run gate, or the depth searcher) still decides what may run:
`PackSearcher` wraps it. A new Tune trial (a pack) gets the members the inner searcher has ready;
when a pack has free slots it says so in a report (`wants`), and the driver answers through a small
Ray actor (`Mailbox`) with more members from the inner searcher, or with none for now. Members
that finish are reported (`done`) and handed to the inner searcher as its own trials' results, so
a dense run that lands releases its tickets and a depth search proposes its next round.

Each member keeps everything of a trial alone: its record under its hash (written by the pack the
moment it leaves), its W&B run, its energy share, and checkpoints of its own under the sweep's
`checkpoints/<hash>/state.pt` (tensors and plain data, loaded as `trainable.resume_state` loads
any checkpoint), so a pack killed at any point loses no member's work beyond its last checkpoint
and a relaunch resumes each member from it, in whatever pack it lands. A member that fails is
retried up to --max-failures times (from its checkpoint), then stored as errored.
"""

import io
import json
import logging
import time
import traceback

import ray
import torch
from ray import tune
from ray.tune.search import Searcher

from layerlth.measure.emissions import EnergySplit
from layerlth.sweep import tracking
from layerlth.sweep.store import SweepStore
from layerlth.sweep.tune.callbacks import keep
from layerlth.sweep.tune.trainable import Reporter, attempt, stored_result
from layerlth.training.packs.pack import Pack

log = logging.getLogger("layerlth")
POLL_SECONDS = 0.5  # how often a pack with free slots looks for the driver's answer


@ray.remote(num_cpus=0)
class Mailbox:
    """The driver's answers to packs: {pack id: [lists of member params]}; `None` means finished."""

    def __init__(self):
        self.boxes = {}

    def put(self, pack_id, members):
        self.boxes.setdefault(pack_id, []).append(members)

    def take(self, pack_id):
        return self.boxes.pop(pack_id, [])


class PackSearcher(Searcher):
    def __init__(self, inner, slots, mailbox_name, store, max_failures):
        super().__init__()
        self.inner, self.slots, self.mailbox_name, self.store = inner, slots, mailbox_name, store
        self.mailbox = ray.get_actor(mailbox_name)
        self.max_failures, self.failures = max_failures, {}
        self.members = {}  # member id -> (pack id, params)
        self.retry, self.finished, self.handed = [], False, 0

    def _take(self, pack_id, n):
        """Up to n members for `pack_id`: failed ones to retry first, then the inner searcher's."""
        taken = []
        while len(taken) < n and self.retry:
            taken.append(self.retry.pop(0))
        while len(taken) < n and not self.finished:
            self.handed += 1
            member_id = f"{pack_id}-m{self.handed}"  # unique: the inner searcher keys its trials by it
            params = self.inner.suggest(member_id)
            if params is Searcher.FINISHED:
                self.finished = True
            if not isinstance(params, dict):
                break
            params["member_id"] = member_id
            taken.append(params)
        for params in taken:
            self.members[params["member_id"]] = (pack_id, params)
        return taken

    def suggest(self, trial_id):
        members = self._take(trial_id, self.slots)
        if not members:
            done = self.finished and not self.retry and not self.members
            return Searcher.FINISHED if done else None
        return {"pack": {"id": trial_id, "members": members, "slots": self.slots, "mailbox": self.mailbox_name},
                "sweep": members[0]["sweep"]}

    def on_trial_result(self, trial_id, result):
        """A pack's report (Tune flattens nested dicts, so the members come as JSON text)."""
        for member_id, record in json.loads(result.get("pack_done_json") or "{}").items():
            self._member_done(member_id, record)
        for member_id, error in json.loads(result.get("pack_failed_json") or "{}").items():
            self._member_failed(member_id, error)
        if result.get("pack_wants"):
            members = self._take(trial_id, result["pack_wants"])
            last = self.finished and not self.retry
            self.mailbox.put.remote(trial_id, {"members": members, "finished": last})

    def _member_done(self, member_id, record):
        if self.members.pop(member_id, None) is not None:
            # the pack stored it, unless its worker could not write there (as for a trial alone)
            keep(self.store, record, lambda: self.store.finished(record["trial_id"]) or self.store.save(record))
            self.inner.on_trial_complete(member_id, {"result_json": json.dumps(record)})

    def _member_failed(self, member_id, error):
        pack_id, params = self.members.pop(member_id, (None, None))
        if params is None:
            return
        trial_id = params["point"]["id"]
        self.failures[trial_id] = self.failures.get(trial_id, 0) + 1
        if self.failures[trial_id] <= self.max_failures:
            log.warning("trial %s failed in pack %s (%d of %d retries): %s", trial_id, pack_id,
                        self.failures[trial_id], self.max_failures, error.splitlines()[-1] if error else "")
            self.retry.append(params)
            return
        record = {**params["point"]["trial"], "trial_id": trial_id, "status": "errored", "error": error}
        keep(self.store, record, lambda: self.store.finished(trial_id) or self.store.save(record))
        self.inner.on_trial_complete(member_id, error=True)

    def on_trial_complete(self, trial_id, result=None, error=False):
        """A pack ended: its members not reported done failed with it (retried like any failure)."""
        if result:
            self.on_trial_result(trial_id, {k: v for k, v in result.items() if k != "pack_wants"})
        for member_id in [m for m, (pack, _) in self.members.items() if pack == trial_id]:
            self._member_failed(member_id, f"its pack {trial_id} ended ({'error' if error else 'early'})")

    def save(self, checkpoint_path):
        """Nothing to save: a relaunch rebuilds the work from the grid and the stored records."""

    def restore(self, checkpoint_path):
        raise NotImplementedError("layerlth never restores a pickled searcher: relaunch the grid (--resume)")


def member_checkpoint_name(trial_id):
    return f"checkpoints/{trial_id}/state.pt"


def save_own_checkpoint(store, trial_id, checkpoint):
    """A trial's checkpoint as its own file in the sweep's store, where `resume_state` finds it."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    store.storage.write_bytes(member_checkpoint_name(trial_id), buffer.getvalue())


class MemberReporter(Reporter):
    """A pack member's callback: as a trial's (`Reporter`), but nothing goes to Tune (the pack
    reports its members as they leave) and its checkpoint is the member's own file in the storage."""

    def report(self, metrics, checkpoint=None):
        if checkpoint is not None:
            save_own_checkpoint(self.store, self.trial_id, checkpoint)


def member_work(params, store, runs):
    """A member as a pack runs it: its record if stored already, else an attempt from its checkpoint."""
    stored = stored_result(params, store)
    if stored:
        return stored
    return (yield from attempt(params, store, reporter=MemberReporter, extra={"pack_trial": params["pack_trial"]},
                               runs=runs))


class MailboxSource:
    """The pack's work source: its first members, then what the driver answers to its `wants`."""

    def __init__(self, pack, store, wandb_runs):
        self.pack, self.store, self.wandb_runs = pack, store, wandb_runs
        self.waiting, self.finished, self.asked_at, self.queue = False, False, 0.0, list(pack["members"])
        self.mailbox = ray.get_actor(pack["mailbox"]) if ray.is_initialized() else None

    def take(self, n):
        if n <= 0:
            return []
        if not self.queue and not self.finished:
            self._ask(n)
        taken, self.queue = self.queue[:n], self.queue[n:]
        return [(params["member_id"], member_work(params | {"pack_trial": self.pack["id"]}, self.store,
                                                  self.wandb_runs)) for params in taken]

    def _ask(self, n):
        if not self.waiting:
            tune.report({"pack_wants": n})
            self.waiting, self.asked_at = True, time.monotonic()
            return
        if time.monotonic() - self.asked_at < POLL_SECONDS:
            return
        self.asked_at = time.monotonic()
        for answer in ray.get(self.mailbox.take.remote(self.pack["id"])):
            self.queue += answer["members"]
            self.finished = self.finished or answer["finished"]
            self.waiting = False

    def exhausted(self):
        return self.finished and not self.queue


def pack_trainable(params):
    """A Tune trial that is a pack: trains members until the driver has no more for it."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    pack = params["pack"]
    store = SweepStore(params["sweep"]["root"])
    wandb_runs = {}
    source = MailboxSource(pack, store, wandb_runs)
    try:
        for finished in Pack(pack["slots"], energy=EnergySplit).run(source):
            if finished.error is None:
                tune.report({"pack_done_json": json.dumps({finished.key: finished.result}),
                             "final_test_acc": finished.result.get("final_test_acc")})
            else:
                text = "".join(traceback.format_exception(finished.error))
                tracking.finish_run(wandb_runs.get(finished.key), {"status": "errored"}, stop_service=False)
                tune.report({"pack_failed_json": json.dumps({finished.key: text})})
    finally:
        tracking.stop_wandb()
