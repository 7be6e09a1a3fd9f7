"""The Ray Tune trainable: `run_trial` plus per-epoch reports, checkpoints, resume and W&B.

Every epoch is reported to Tune; every `checkpoint_every` epochs (and the last) the report carries
a `tune.Checkpoint` with the model, optimizer state, epoch and history, so a retried or resumed
trial continues from there. The final report carries the whole result row as JSON for the driver,
which stores it.
"""

import json
import logging
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

from layerlth.config import TrialConfig
from layerlth.sweep import tracking
from layerlth.sweep.store import SweepStore
from layerlth.trial import run_trial, training_recipe

STATE = "state.pt"


def load_checkpoint(checkpoint):
    with checkpoint.as_directory() as directory:
        return torch.load(Path(directory) / STATE, map_location="cpu", weights_only=False)


class Reporter:
    """Trial callback: metrics to Tune and W&B each epoch, a checkpoint every `every` epochs."""

    def __init__(self, every, last_epoch, run, attempts, nodes=()):
        self.every, self.last_epoch, self.run, self.attempts, self.nodes = every, last_epoch, run, attempts, nodes

    def __call__(self, state):
        if state.metrics is None:
            return
        metrics = dict(state.metrics)
        if self.run is not None:
            self.run.log(metrics, step=state.epoch)
        if state.epoch % self.every and state.epoch != self.last_epoch:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            context = {**state.context, "attempts": self.attempts, "attempt_nodes": self.nodes}
            torch.save({"model": state.model, "optimizer": state.optimizer.state_dict(), "epoch": state.epoch,
                        "history": state.history, "context": context}, Path(directory) / STATE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def _test_failure(point, storage):
    """Test-only switch (`_test_fail` in a grid study): fail on the first attempt, or on every one."""
    mode = point.get("test_fail")
    marker = f"trials/{point['id']}/failed_once"
    if mode == "always" or (mode == "once" and not storage.exists(marker)):
        storage.write_bytes(marker, b"")
        raise RuntimeError(f"test failure ({mode}) of trial {point['id']}")


def wandb_dir(storage, mode):
    """W&B writes a real directory: the sweep's own when local, else one on this node."""
    return None if mode == "disabled" else storage.local_dir("wandb")


def trainable(params):
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one line per checkpoint is noise
    point, sweep = params["point"], params["sweep"]
    store = SweepStore(sweep["root"])
    stored = store.result(point["id"])
    if stored and stored.get("status") == "finished":
        # finished before the driver died, but after Ray's last snapshot: nothing to redo
        tune.report({"final_test_acc": stored["final_test_acc"], "result_json": json.dumps(stored)})
        return
    config = TrialConfig.from_dict(point["trial"])
    _test_failure(point, store.storage)
    checkpoint = tune.get_checkpoint()
    resume = load_checkpoint(checkpoint) if checkpoint else None
    attempts = (resume["context"].get("attempts", []) if resume else []) + [resume["epoch"] if resume else 0]
    nodes = (resume["context"].get("attempt_nodes", []) if resume else []) + [ray.get_runtime_context().get_node_id()]
    run = tracking.start_run(config, sweep["name"], sweep["wandb_mode"], sweep["wandb_project"],
                             sweep.get("wandb_entity"), wandb_dir(store.storage, sweep["wandb_mode"]))
    reporter = Reporter(sweep["checkpoint_every"], training_recipe(config).epochs, run, attempts, nodes)
    started = time.time()
    result = run_trial(config, callbacks=[reporter], resume=resume)
    result |= {"trial_id": point["id"], "attempt_start_epochs": attempts, "attempt_nodes": nodes,
               "wall_seconds": time.time() - started,
               "wandb_run": run.dir if run is not None else None}
    tracking.finish_run(run, result)
    tune.report({"final_test_acc": result["final_test_acc"], "result_json": json.dumps(result, default=str)})
