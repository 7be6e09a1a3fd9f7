import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from layerlth import build_model, remove_blocks
from layerlth.criteria import score_weights
from layerlth.models.filters import filter_count, filter_scores, remove_filters, select_filters


def data():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 3, 32, 32, generator=g), torch.randint(10, (16,), generator=g))]


def test_filter_counts_of_the_paper():
    model = build_model("resnet32")
    assert filter_count(model) == 1232
    assert filter_count(remove_blocks(model, ["stage1.block2"])) == 1200
    assert filter_count(remove_blocks(model, ["stage1.block2", "stage1.block3"])) == 1168


@pytest.mark.parametrize("criterion,target", [("grasp", 1200), ("snip", 1168)])
def test_filter_ticket_hits_the_layer_tickets_filter_count_exactly(criterion, target):
    model = build_model("resnet32")
    scores = filter_scores(model, score_weights(model, criterion, data()))
    ticket = remove_filters(model, select_filters(model, scores, 1232 - target))
    assert filter_count(ticket) == target
    assert ticket(torch.randn(2, 3, 32, 32)).shape == (2, 10)


class SlimBlock(nn.Module):
    """A BasicBlock written out by hand with `width` inner channels."""

    def __init__(self, block, keep):
        super().__init__()
        self.w1, self.w2 = block.conv1.weight[keep].clone(), block.conv2.weight[:, keep].clone()
        self.bn1 = [t[keep].clone() for t in (block.bn1.running_mean, block.bn1.running_var, block.bn1.weight, block.bn1.bias)]
        self.block = block

    def forward(self, x):
        stride = self.block.conv1.stride
        out = F.relu(F.batch_norm(F.conv2d(x, self.w1, stride=stride, padding=1), *self.bn1))
        out = self.block.bn2(F.conv2d(out, self.w2, padding=1))
        return F.relu(out + self.block.shortcut(x))


def test_filter_surgery_equals_a_hand_built_smaller_net():
    dense = build_model("resnet20").eval()
    removed = {"stage1.block1": [0, 5, 7], "stage2.block1": [3], "stage3.block2": list(range(0, 64, 2))}
    pruned = remove_filters(dense, removed).eval()
    hand = copy.deepcopy(dense)
    for name, gone in removed.items():
        block = hand.get_submodule(name)
        keep = [f for f in range(block.conv1.out_channels) if f not in gone]
        stage, index = name.split(".")
        setattr(getattr(hand, stage), index, SlimBlock(block, keep))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), hand(x))
    assert filter_count(pruned) == filter_count(dense) - 36
    assert pruned.stage3.block2.conv2.in_channels == 32 and dense.stage3.block2.conv2.in_channels == 64


def test_bad_filter_requests_are_named():
    model = build_model("resnet20")
    with pytest.raises(ValueError, match="'fc' has no prunable filters"):
        remove_filters(model, {"fc": [0]})
    with pytest.raises(ValueError, match="leave one"):
        remove_filters(model, {"stage1.block1": list(range(16))})
