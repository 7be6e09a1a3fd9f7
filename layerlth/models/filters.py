"""Filter surgery, the baseline the paper compares layer tickets with (its Table 3): remove whole
output channels of a block's first conv, with its BN and the next conv's inputs shrunk to match.

A filter's score is the sum of the per-weight scores of the connections that die with it: its
slice of conv1 (the filter itself) and the matching input slice of conv2.
"""

import copy

import torch
import torch.nn as nn

from layerlth.models.blocks import PHYSICAL_ONLY, describe_blocks


def filter_count(model):
    """Output channels of every convolution, projection shortcuts included (ResNet32-B: 1232)."""
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def prunable_convs(model):
    """{block name: filters of its first conv}, for blocks built conv1 -> bn1 -> ... -> conv2."""
    blocks = {}
    for info in describe_blocks(model, PHYSICAL_ONLY):
        block = model.get_submodule(info.name)
        if all(hasattr(block, a) for a in ("conv1", "bn1", "conv2")) and block.conv2.groups == 1:
            blocks[info.name] = block.conv1.out_channels
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no conv1/bn1/conv2 blocks whose filters can be removed")
    return blocks


def filter_scores(model, weight_scores):
    """{(block, filter index): score} from per-weight scores (see layerlth.criteria.score_weights)."""
    scores = {}
    for name in prunable_convs(model):
        first = weight_scores[f"{name}.conv1.weight"].double().flatten(1).sum(1)
        second = weight_scores[f"{name}.conv2.weight"].double().transpose(0, 1).flatten(1).sum(1)
        scores.update({(name, f): float(s) for f, s in enumerate(first + second)})
    return scores


def select_filters(model, scores, count):
    """The `count` lowest-scoring filters, network-wide, leaving each conv at least one filter."""
    left = dict(prunable_convs(model))
    capacity = sum(left.values()) - len(left)
    if not 0 <= count <= capacity:
        raise ValueError(f"cannot remove {count} filters: this model allows 0..{capacity}")
    chosen, taken = {}, 0
    for name, f in sorted(scores, key=lambda key: (scores[key], key)):
        if taken == count:
            break
        if left[name] > 1:
            left[name] -= 1
            taken += 1
            chosen.setdefault(name, []).append(f)
    return {name: sorted(fs) for name, fs in chosen.items()}


def _slice_conv(conv, out_keep=None, in_keep=None):
    weight = conv.weight.detach()
    weight = weight[out_keep] if out_keep is not None else weight
    weight = weight[:, in_keep] if in_keep is not None else weight
    new = nn.Conv2d(weight.shape[1], weight.shape[0], conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, bias=conv.bias is not None).to(weight.device, weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias if out_keep is None else conv.bias[out_keep])
    return new


def _slice_bn(bn, keep):
    new = nn.BatchNorm2d(len(keep), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    new = new.to(bn.weight.device, bn.weight.dtype)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new, name).copy_(getattr(bn, name)[keep])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def remove_filters(model, filters):
    """A copy of `model` without the given {block: [filter indices]} of each block's conv1."""
    convs = prunable_convs(model)
    pruned = copy.deepcopy(model)
    for name, removed in filters.items():
        if name not in convs:
            raise ValueError(f"{name!r} has no prunable filters; blocks: {sorted(convs)}")
        keep = torch.tensor([f for f in range(convs[name]) if f not in set(removed)], dtype=torch.long)
        if not len(keep) or len(keep) + len(set(removed)) != convs[name]:
            raise ValueError(f"{name}: filter indices {removed} must be distinct, in 0..{convs[name] - 1}, and leave one")
        block = pruned.get_submodule(name)
        block.conv1 = _slice_conv(block.conv1, out_keep=keep)
        block.bn1 = _slice_bn(block.bn1, keep)
        block.conv2 = _slice_conv(block.conv2, in_keep=keep)
    return pruned
