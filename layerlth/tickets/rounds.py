"""Block removal in rounds: score the net, remove its lowest-scoring blocks, re-score the shallower
net, repeat. One round is the paper's one-shot removal; with k rounds, round i removes
ceil(remaining / rounds left) of the p blocks, so each round's scores are those of the net as it
then is (SynFlow's argument for pruning weights iteratively, here for whole blocks).

The removal rule is checked on the current net each round: it counts the blocks a stage still has,
so blocks removed in earlier rounds count against the stage's minimum."""

import math

from layerlth.models import remove_blocks, select_lowest


def check_rounds(rounds, p):
    """k must be in 1..p (1..1 when p = 0: nothing to iterate over)."""
    allowed = max(p, 1)
    if not 1 <= rounds <= allowed:
        raise ValueError(f"rounds={rounds} is not possible with p={p}: allowed 1..{allowed} "
                         f"(1 = one shot, the paper's; at most one block per round)")


def round_sizes(p, rounds):
    """How many blocks each round removes: ceil(remaining / rounds left), summing to p."""
    check_rounds(rounds, p)
    sizes = []
    for left in range(rounds, 0, -1):
        sizes.append(math.ceil((p - sum(sizes)) / left))
    return sizes


def remove_in_rounds(model, score, p, rounds, rule):
    """(a shallower copy of `model`, one {"scores", "removed"} per round). `score(net)` rates the
    blocks of `net` that `rule` lets go; `model` itself is untouched."""
    net, history = model, []
    for size in round_sizes(p, rounds):
        scores = score(net)
        removed = select_lowest(net, scores, size, rule)
        net = remove_blocks(net, removed)
        history.append({"scores": scores, "removed": removed})
    return net, history


def removal_order(history):
    """Every removed block, in the order they went."""
    return [name for step in history for name in step["removed"]]
