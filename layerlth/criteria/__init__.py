"""Block scoring criteria: one registry, one entry point.

`score_blocks(model, criterion, batches)` returns {block name: score}; higher means more
important, so the p lowest-scoring blocks are the ones removed. Criteria that rate single weights
(SNIP, GraSP, SynFlow) are aggregated per block (`aggregate`: sum by default, or mean). Scoring
runs on a copy: the caller's weights and BN statistics are never touched.
"""

import copy
import inspect
import random as _random
from dataclasses import dataclass
from typing import Callable

from layerlth.criteria.grasp import grasp
from layerlth.criteria.snip import snip
from layerlth.criteria.synflow import synflow
from layerlth.criteria.weights import AGGREGATES, aggregate
from layerlth.models import removable_blocks
from layerlth.models.blocks import PHYSICAL_ONLY


@dataclass(frozen=True)
class Criterion:
    score: Callable  # (model, batches, **options) -> {weight name: tensor} or {block: float}
    per_weight: bool  # True: per-weight scores, aggregated per block
    needs_data: bool
    help: str


def random_blocks(model, batches, seed=0):
    """One uniform draw per block from a seeded generator (a draw per weight would favour big blocks)."""
    rng = _random.Random(seed)
    return {name: rng.random() for name in removable_blocks(model, PHYSICAL_ONLY)}


CRITERIA = {
    "snip": Criterion(snip, True, True, "SNIP |theta * dL/dtheta| at init"),
    "grasp": Criterion(grasp, True, True, "GraSP theta * Hg at init (the paper's default)"),
    "synflow": Criterion(synflow, True, False, "SynFlow theta * dR/dtheta, data-free"),
    "random": Criterion(random_blocks, False, False, "uniform random scores (seeded)"),
}


def check_criterion(name):
    if name not in CRITERIA:
        raise ValueError(f"unknown criterion {name!r}; allowed: {sorted(CRITERIA)}")
    return CRITERIA[name]


def score_blocks(model, criterion, batches=(), blocks=None, aggregate_by="sum", **options):
    """{block name: score} for `blocks` (default: the removable ones under the default rule).

    `options` (e.g. seed, input_size, temperature) go to the criteria that take them.
    """
    entry = check_criterion(criterion)
    blocks = removable_blocks(model) if blocks is None else list(blocks)
    batches = list(batches) if entry.needs_data else batches
    if entry.needs_data and not batches:
        raise ValueError(f"criterion {criterion!r} needs batches of (inputs, labels)")
    net = copy.deepcopy(model).train()
    accepted = inspect.signature(entry.score).parameters
    scores = entry.score(net, batches, **{k: v for k, v in options.items() if k in accepted})
    if entry.per_weight:
        return aggregate(scores, blocks, aggregate_by)
    return {name: scores[name] for name in blocks}
