"""The weights a pruning score rates, and how per-weight scores become one score per block."""

AGGREGATES = {
    "sum": "sum of the block's per-weight scores (bigger blocks can score more)",
    "mean": "mean per-weight score of the block (independent of the block's width)",
}


def prunable_weights(model):
    """{name: weight} of every parameter with two or more dimensions: conv kernels, linear and
    attention projections (MultiheadAttention's in_proj_weight), ConvNeXt's layer scale, Swin's
    position-bias table. Biases and normalisation scales are left out, as in the authors' code;
    on a CIFAR ResNet these are exactly its conv and linear weights."""
    return {name: p for name, p in model.named_parameters() if p.dim() >= 2}


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
