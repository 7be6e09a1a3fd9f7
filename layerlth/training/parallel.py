"""One run trained data-parallel by several processes (torch.distributed, set up by the caller:
Ray Train on a cluster, gloo on CPUs in the tests).

Every rank holds the same net (DistributedDataParallel broadcasts rank 0's weights when it wraps it,
and averages the gradients of each step), trains on its own part of each global batch (the
dataset's `shard(rank, world)`: disjoint groups of images), and adds its sums (loss, correct,
images, for training and evaluation) into the global ones, so every rank reports the same metrics.
BatchNorm keeps per-rank statistics, as torchvision's ImageNet recipe does (SyncBatchNorm needs GPUs).

`active()` is the setting of the run in progress, None when a run trains alone: the trial reads it
where it builds its run, so a trial's code is the same on one process and on many.
"""

import contextlib
import contextvars
from dataclasses import dataclass

import torch
import torch.distributed as dist

_ACTIVE = contextvars.ContextVar("layerlth_parallel", default=None)


@dataclass(frozen=True)
class Parallel:
    rank: int
    world: int
    local_rank: int = 0

    def wrap(self, model):
        """`model` under DDP: rank 0's weights and buffers now on every rank, gradients averaged."""
        device = next(model.parameters()).device
        ids = [device] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def reduce(self, values, op=None):
        """The sums over all ranks of a list of numbers (float64: exact for counts)."""
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
        return tensor.tolist()

    def largest(self, values):
        return self.reduce(values, dist.ReduceOp.MAX)

    def decide(self, value):
        """Rank 0's `value` on every rank (a decision all ranks must share, e.g. a stored run's state)."""
        found = [value]
        dist.broadcast_object_list(found, src=0)
        return found[0]

    def per_rank(self, batch_size):
        """Each rank's share of a global batch."""
        if batch_size % self.world:
            raise ValueError(f"batch_size {batch_size} does not split over {self.world} workers; use a multiple "
                             f"of {self.world}")
        return batch_size // self.world


def active():
    return _ACTIVE.get()


def leads():
    """Whether this process writes what a run leaves (records, stored runs): alone, or rank 0."""
    parallel = active()
    return parallel is None or parallel.rank == 0


@contextlib.contextmanager
def training_in_parallel(parallel):
    """Runs built inside train data-parallel as `parallel` says."""
    token = _ACTIVE.set(parallel)
    try:
        yield parallel
    finally:
        _ACTIVE.reset(token)
