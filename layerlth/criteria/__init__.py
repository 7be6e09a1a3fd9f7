"""Block scoring criteria: one registry, one entry point.

`score_blocks(model, criterion, batches)` returns {block name: score}; higher means more
important, so the p lowest-scoring blocks are the ones removed. Criteria that rate single weights
(SNIP, GraSP, SynFlow, L1) are aggregated per block (`aggregate`: sum by default, or mean); the
others rate blocks from their outputs. Scoring runs on a copy: the caller's weights and BN
statistics are never touched. Gradient criteria run the copy in train mode (BN on batch
statistics, as in training); output criteria, meant for trained nets, in eval mode.
The criteria of trained nets compute what the paper's authors compute (see `trained.py`).
"""

import copy
import inspect
import random as _random
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from layerlth.criteria.grasp import grasp
from layerlth.criteria.snip import snip
from layerlth.criteria.synflow import synflow
from layerlth.criteria.trained import cka, expectabs, hrank, kl, l1, pls
from layerlth.criteria.weights import AGGREGATES, aggregate
from layerlth.models import block_kind, removable_blocks
from layerlth.models.blocks import PHYSICAL_ONLY


@dataclass(frozen=True)
class Criterion:
    score: Callable  # (model, batches, **options) -> {weight name: tensor} or {block: float}
    per_weight: bool  # True: per-weight scores, aggregated per block
    needs_data: bool
    train_mode: bool  # BN on batch statistics (gradient criteria) or running ones
    help: str
    for_trained: bool = False  # meaningful on a trained net (Algorithm 1), not at initialisation


def random_blocks(model, batches, blocks, seed=0):
    """One uniform draw per block from a seeded generator (a draw per weight would favour big
    blocks); every physically removable block draws, so a block's score does not depend on the rule."""
    rng = _random.Random(seed)
    draws = {name: rng.random() for name in removable_blocks(model, PHYSICAL_ONLY)}
    return {name: draws[name] for name in blocks}


CRITERIA = {
    "grasp": Criterion(grasp, True, True, True, "GraSP theta * Hg at init (the paper's default)"),
    "snip": Criterion(snip, True, True, True, "SNIP |theta * dL/dtheta| at init"),
    "synflow": Criterion(synflow, True, False, False, "SynFlow theta * dR/dtheta, data-free"),
    "hrank": Criterion(hrank, False, True, False, "HRank: mean rank / side of relu(block output) maps", True),
    "expectabs": Criterion(expectabs, False, True, False, "expectABS: mean |relu(block output)|", True),
    "pls": Criterion(pls, False, True, False, "PLS+VIP: mean VIP of one PLS on the block's pooled residual sum", True),
    "kl": Criterion(kl, False, True, False, "KL(without block || dense) of the softmax outputs", True),
    "cka": Criterion(cka, False, True, False, "1 - linear CKA of penultimate features with vs without the block", True),
    "l1": Criterion(l1, True, False, False, "L1 norm of the block's weights (biased to early stages)", True),
    "random": Criterion(random_blocks, False, False, False, "uniform random scores (seeded)"),
}
"""The block criteria by name: `{name: Criterion}`, the names `score_blocks` and the `criterion`
trial option take.

At initialisation (Algorithm 2): `grasp`, `snip` and `synflow`, per-weight scores summed (or
averaged) over each block's weights. For trained nets (Algorithm 1): `hrank`, `expectabs` and
`pls`, read from the block's output maps; `kl` and `cka`, from the net's outputs without the block;
and `l1`, the L1 norm of its weights. `random`: one seeded draw per block. A higher score means a
more important block. Each `Criterion` holds its scoring function, whether it scores weights
(`per_weight`), whether it reads images (`needs_data`), whether BatchNorm runs in train mode while
scoring (`train_mode`), whether it is meant for trained nets (`for_trained`), and a one-line
`help`.
"""
__all__ = ["AGGREGATES", "CRITERIA", "aggregate", "Criterion", "check_applicable", "check_criterion", "score_blocks",
           "score_weights"]
MAP_CRITERIA = ("hrank", "expectabs", "pls")  # defined on a block's (N, C, H, W) output maps
NOT_HOMOGENEOUS = (nn.LayerNorm, nn.MultiheadAttention)  # LayerNorm2d and Swin's norms subclass LayerNorm


def check_criterion(name):
    if name not in CRITERIA:
        raise ValueError(f"unknown criterion {name!r}; allowed: {sorted(CRITERIA)}")
    return CRITERIA[name]


def check_applicable(criterion, model, arch=None):
    """Refuse a criterion on a network where it has no definition, naming both.

    SynFlow's conservation argument needs a positively homogeneous net (ReLU, BN in eval mode);
    LayerNorm and softmax attention break it, so transformer-style nets (ViT, Swin, ConvNeXt) are
    refused. HRank, expectABS and PLS read a block's (N, C, H, W) output maps; transformer blocks
    compute on tokens, where the authors define only CKA (and random) for layers.
    """
    entry = check_criterion(criterion)
    name = arch or type(model).__name__
    if criterion == "synflow":
        found = sorted({type(m).__name__ for m in model.modules() if isinstance(m, NOT_HOMOGENEOUS)})
        if found:
            raise ValueError(f"criterion 'synflow' assumes a positively homogeneous net, but {name} has {found}: "
                             f"its scores would have no meaning there; use grasp, snip or random")
    if criterion in MAP_CRITERIA:
        tokens = sorted({type(m).__name__ for m in model.modules() if getattr(block_kind(m), "layout", "") == "tokens"})
        if tokens:
            raise ValueError(f"criterion {criterion!r} is defined on (N, C, H, W) maps, but {name}'s blocks "
                             f"{tokens} compute on tokens; for trained transformers use cka, kl or random")
    return entry


def _run(model, criterion, batches, options):
    entry = check_applicable(criterion, model)
    batches = list(batches) if entry.needs_data else batches
    if entry.needs_data and not batches:
        raise ValueError(f"criterion {criterion!r} needs batches of (inputs, labels)")
    net = copy.deepcopy(model).train(entry.train_mode)
    accepted = inspect.signature(entry.score).parameters
    return entry.score(net, batches, **{k: v for k, v in options.items() if k in accepted})


def score_weights(model, criterion, batches=(), **options):
    """{weight name: per-weight score tensor}, for criteria that rate single weights."""
    if not check_criterion(criterion).per_weight:
        per_weight = sorted(n for n, c in CRITERIA.items() if c.per_weight)
        raise ValueError(f"criterion {criterion!r} rates blocks, not weights; per-weight ones: {per_weight}")
    return _run(model, criterion, batches, options)


def score_blocks(model, criterion, batches=(), blocks=None, aggregate_by="sum", **options):
    """{block name: score} for `blocks` (default: the removable ones under the default rule).

    `options` (e.g. seed, input_size, temperature) go to the criteria that take them.
    """
    blocks = removable_blocks(model) if blocks is None else list(blocks)
    scores = _run(model, criterion, batches, {**options, "blocks": blocks})
    if check_criterion(criterion).per_weight:
        return aggregate(scores, blocks, aggregate_by)
    return {name: scores[name] for name in blocks}
