"""The Ray Tune trainable: `run_trial` plus per-epoch reports, checkpoints, resume and W&B.

Every epoch is reported to Tune; every `checkpoint_every` epochs (and the last) the report carries
a `tune.Checkpoint` with the weights (a state_dict), a plain description of the ticket's
architecture, the optimizer state, epoch and history, so a retried or resumed trial continues from
there. Checkpoints load with `weights_only=True`, and the network is rebuilt from the trial's own
config (the file only says which blocks and filters are gone): one planted in the storage cannot
run code, nor make a worker build or import anything else.
A trial resumes from the most trained of Tune's checkpoint and those it left in the sweep's tune/
folder: Tune's experiment snapshot lags the trials by seconds, so a driver killed in between would
otherwise restart a trial from an older checkpoint, or from scratch.
A finished trial writes its own record into the sweep's store (atomically), then reports it as JSON
to the driver, so a driver killed in between loses nothing.
"""

import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

from layerlth.foundations.config import TrialConfig
from layerlth.foundations.recipes import training_recipe
from layerlth.measure.emissions import EnergySplit
from layerlth.sweep import tracking
from layerlth.sweep.store import SweepStore
from layerlth.tickets.trial import trial_work
from layerlth.training.checkpoints import UnsafeCheckpoint, checkpoint_state, load_state, ticket_weights  # noqa: F401
from layerlth.training.packs.pack import run_alone

STATE = "state.pt"
log = logging.getLogger("layerlth")


def load_checkpoint(checkpoint, config):
    with checkpoint.as_directory() as directory:
        return load_state(Path(directory) / STATE, config)


def left_states(storage, trial_id, config):
    """The checkpoints trial `trial_id` left under the sweep's tune/ folder, by any attempt, and the
    one it keeps as a pack's member (`packs.member_checkpoint_name`). One cut short by a kill (or
    not ours) is skipped with a warning: an older one is still there."""
    names = storage.glob(f"tune/*/{trial_id}/checkpoint_*/{STATE}") + storage.glob(f"checkpoints/{trial_id}/{STATE}")
    for name in names:
        try:
            yield load_state(storage.path(name), config, io.BytesIO(storage.read_bytes(name)))
        except (UnsafeCheckpoint, OSError) as error:
            log.warning("skipping %s: %s", storage.path(name), error)


def resume_state(checkpoint, storage, trial_id, config):
    """The most trained of Tune's `checkpoint` (one this experiment wrote) and the ones left on
    storage by any attempt; None for a fresh start."""
    best = load_checkpoint(checkpoint, config) if checkpoint else None
    for state in left_states(storage, trial_id, config):
        if best is None or state["epoch"] > best["epoch"]:
            best = state
    return best


class Reporter:
    """Trial callback: metrics to W&B each epoch, and to Tune through `report`; a checkpoint every
    `every` epochs (and at the last); a ticket's final weights beside its record (the driver computes
    its CKA once the dense run lands)."""

    def __init__(self, every, last_epoch, run, attempts, config, nodes=(), store=None, trial_id=None):
        self.every, self.last_epoch, self.run, self.attempts = every, last_epoch, run, attempts
        self.config, self.nodes, self.store, self.trial_id = config, nodes, store, trial_id

    def __call__(self, state):
        if state.metrics is None:
            return
        metrics = dict(state.metrics)
        if self.run is not None:
            self.run.log(metrics, step=state.epoch)
        if state.epoch % self.every and state.epoch != self.last_epoch:
            self.report(metrics)
            return
        if state.epoch == self.last_epoch and self.store is not None and not self.config.is_dense:
            self.store.storage.write_bytes(self.store.weights_name(self.trial_id), ticket_weights(state, self.config))
        self.report(metrics, checkpoint_state(state, self.config, self.attempts, self.nodes))

    def report(self, metrics, checkpoint=None):
        """The epoch's metrics to Tune, with the checkpoint when one is due."""
        if checkpoint is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            torch.save(checkpoint, Path(directory) / STATE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def test_failure(point, storage):
    """Test-only switch (`_test_fail` in a grid study): fail on the first attempt, or on every one."""
    mode = point.get("test_fail")
    marker = f"trials/{point['id']}/failed_once"
    if mode == "always" or (mode == "once" and not storage.exists(marker)):
        storage.write_bytes(marker, b"")
        raise RuntimeError(f"test failure ({mode}) of trial {point['id']}")


def node_id():
    """The Ray node running this trial; None outside Ray (asking would start a local Ray)."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def wandb_dir(storage, mode):
    """W&B writes a real directory: the sweep's own when local, else one on this node."""
    return None if mode == "disabled" else storage.local_dir("wandb")


def attempt(params, store, checkpoint=None, reporter=Reporter, extra=None, runs=None, lead=True, finish=None,
            changes=None):
    """One attempt at a sweep's trial as the generator a pack drives (`trial_work` inside): from its
    newest checkpoint (Tune's `checkpoint` or one left on storage), with its W&B run (kept in `runs`
    by member id when given) and `reporter`'s callback; its record, `extra` fields added, stored before
    it is returned. A worker that cannot write the store leaves the record to the driver.
    A data-parallel trial's ranks each make an attempt: only the `lead` one has a W&B run and stores
    the record, after `finish` (on every rank) has added up what the ranks measured; `changes` are
    this rank's settings (its energy meter)."""
    point, sweep = params["point"], params["sweep"]
    config = TrialConfig.from_dict(point["trial"] | (changes or {}))
    test_failure(point, store.storage)
    resume = resume_state(checkpoint, store.storage, point["id"], config)
    attempts = (resume["context"].get("attempts", []) if resume else []) + [resume["epoch"] if resume else 0]
    nodes = (resume["context"].get("attempt_nodes", []) if resume else []) + [node_id()]
    started = time.time()  # W&B's start (up to its timeout on a dead network) is part of the trial's time
    mode = sweep["wandb_mode"] if lead else "disabled"
    run = tracking.start_run(config, sweep["name"], mode, sweep["wandb_project"], sweep.get("wandb_entity"),
                             wandb_dir(store.storage, mode), point.get("tags", ()))
    if runs is not None:
        runs[params["member_id"]] = run
    callback = reporter(sweep["checkpoint_every"], training_recipe(config).epochs, run, attempts, config, nodes,
                        store, point["id"])
    result = yield from trial_work(config, callbacks=[callback], resume=resume)
    result |= {"trial_id": point["id"], "attempt_start_epochs": attempts, "attempt_nodes": nodes,
               "wall_seconds": time.time() - started, "worker_pid": os.getpid(),
               "wandb_run": run.dir if run is not None else None, **(extra or {})}
    if finish is not None:
        result = finish(result)
    result |= {k: v for k, v in point["trial"].items() if k in (changes or {})}  # the trial's own, not the rank's
    tracking.finish_run(run, result, stop_service=runs is None)  # a pack's other members still log
    result = json.loads(json.dumps(result, default=str))  # the record exactly as the driver will read it
    if not lead:
        return result
    try:
        store.save(result)  # before reporting: a driver that dies now finds the trial stored
    except OSError as error:  # e.g. a worker that does not see the driver's disk: the driver stores it
        log.warning("could not store trial %s here (%s); the driver will", point["id"], error)
    return result


def stored_result(params, store):
    """The trial's record when it finished before the driver died (after Ray's last snapshot)."""
    stored = store.result(params["point"]["id"])
    return stored if stored and stored.get("status") == "finished" else None


def trainable(params):
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one line per checkpoint is noise
    store = SweepStore(params["sweep"]["root"])
    if params["point"]["trial"].get("workers", 1) > 1:  # data-parallel over Ray Train workers
        from layerlth.sweep.tune.workers import train_across_workers

        result = stored_result(params, store) or train_across_workers(params, store)
    else:
        result = stored_result(params, store) or run_alone(attempt(params, store, tune.get_checkpoint()), energy=EnergySplit)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the worker may run the next trial: let trials packed beside it have the memory
    tune.report({"final_test_acc": result["final_test_acc"], "result_json": json.dumps(result)})
