"""A sweep's trial with `workers: N > 1`: trained data-parallel by N Ray Train workers
(`TorchTrainer`, started from inside the trial's Tune trainable), one GPU each, across nodes where
the cluster has them; gloo on CPUs.

Every rank makes the trial's attempt (`trainable.attempt`) inside `parallel.training_in_parallel`:
each scores the ticket with the trial's seed on the same images (the same removed blocks), DDP
broadcasts rank 0's initial weights, and each trains on its share of every global batch. Rank 0
alone has the W&B run, writes checkpoints (`checkpoints/<trial>/state.pt` in the sweep's store, as
a pack's member does) and stores the one record. A worker or node that dies makes Ray Train restart
the group, which resumes from that checkpoint: it costs at most the epoch in progress.

The record adds up what the ranks measured: energy and CO2 summed over nodes (one codecarbon meter
per node, on its first worker: a meter reads the whole machine), peak memory the largest of any
rank, and says how many workers and nodes trained it.
"""

import json
import os
import signal
import uuid

import torch.distributed as dist
from ray import train

from layerlth.sweep.tune.packs import save_own_checkpoint
from layerlth.sweep.tune.trainable import Reporter, attempt

ENERGY = ("energy_kwh", "co2_kg", "cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh")


def train_across_workers(params, store):
    """The trial's record, trained by `workers` Ray Train workers."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    sweep, workers = params["sweep"], params["point"]["trial"]["workers"]
    gpus = sweep.get("gpus_per_trial", 0) > 0
    resources = {"CPU": sweep.get("cpus_per_trial", 1)} | ({"GPU": 1} if gpus else {})
    trainer = TorchTrainer(
        worker_loop, train_loop_config={"params": params},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus, resources_per_worker=resources),
        run_config=RunConfig(name=f"{params['point']['id']}-{uuid.uuid4().hex[:8]}",
                             storage_path=store.storage.child("train").location,
                             failure_config=FailureConfig(max_failures=sweep.get("worker_failures", 2))),
    )
    return json.loads(trainer.fit().metrics["result_json"])


def worker_loop(loop_config):
    """One Ray Train worker: its rank's attempt at the trial, then the record to the trainer."""
    from layerlth.measure.emissions import EnergySplit
    from layerlth.sweep.store import SweepStore
    from layerlth.training.packs.pack import run_alone
    from layerlth.training.parallel import Parallel, training_in_parallel

    params, context = loop_config["params"], train.get_context()
    parallel = Parallel(context.get_world_rank(), context.get_world_size(), context.get_local_rank())
    store, lead = SweepStore(params["sweep"]["root"]), parallel.rank == 0
    changes = {} if parallel.local_rank == 0 else {"emissions": False}  # one meter per node
    reporter = WorkerReporter if lead else LaterRank
    if params["point"].get("test_fail") == "kill_worker" and parallel.rank == parallel.world - 1:
        reporter = KilledOnce
    with training_in_parallel(parallel):
        result = run_alone(attempt(params, store, reporter=reporter, lead=lead,
                                   finish=lambda row: added_up(row, parallel), changes=changes,
                                   extra={"workers": parallel.world}), energy=EnergySplit)
    train.report({"result_json": json.dumps(result), "final_test_acc": result.get("final_test_acc")})


def added_up(row, parallel):
    """The ranks' rows as one: energy summed, the largest peak memory, the nodes counted."""
    totals = parallel.reduce([row.get(k) or 0.0 for k in ENERGY])
    [peak] = parallel.largest([row.get("memory_bytes") or 0])
    nodes = [None] * parallel.world
    dist.all_gather_object(nodes, (row.get("attempt_nodes") or [None])[-1])
    return row | dict(zip(ENERGY, totals)) | {"memory_bytes": int(peak), "worker_nodes": len(set(nodes)),
                                              "energy_summed_over": "nodes (one meter each)"}


class WorkerReporter(Reporter):
    """Rank 0's callback: W&B and checkpoints as a trial's (`Reporter`), its checkpoint in the
    sweep's store, where a restarted group finds it; the epoch's metrics to Ray Train."""

    def report(self, metrics, checkpoint=None):
        if checkpoint is not None:
            save_own_checkpoint(self.store, self.trial_id, checkpoint)
        train.report(metrics)


class LaterRank(Reporter):
    """Another rank's callback: only the report every rank makes each epoch (Ray Train's barrier)."""

    def __call__(self, state):
        if state.metrics is not None:
            train.report(dict(state.metrics))


class KilledOnce(LaterRank):
    """Test-only (`_test_fail: kill_worker` in a grid study): the last rank SIGKILLs its own process
    after the first epoch's report, once per trial, as a node that dies would."""

    def __call__(self, state):
        super().__call__(state)
        marker = f"trials/{self.trial_id}/worker_killed_once"
        if state.epoch == 1 and not self.store.storage.exists(marker):
            self.store.storage.write_bytes(marker, b"")
            os.kill(os.getpid(), signal.SIGKILL)
