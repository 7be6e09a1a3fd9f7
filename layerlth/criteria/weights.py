"""The weights a pruning score rates, and how per-weight scores become one score per block."""

import torch.nn as nn

AGGREGATES = {
    "sum": "sum of the block's per-weight scores (bigger blocks can score more)",
    "mean": "mean per-weight score of the block (independent of the block's width)",
}


def prunable_weights(model):
    """{name: weight} of every conv and linear layer: the connections SNIP/GraSP/SynFlow rate."""
    return {
        f"{module_name}.weight": module.weight
        for module_name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }


def aggregate(weight_scores, blocks, how="sum"):
    """{block: score} from {weight name: per-weight score tensor}."""
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}; allowed: {sorted(AGGREGATES)}")
    result = {}
    for block in blocks:
        inside = [s for name, s in weight_scores.items() if name.startswith(block + ".")]
        total = sum(float(s.double().sum()) for s in inside)
        count = sum(s.numel() for s in inside)
        result[block] = total / count if how == "mean" else total
    return result
