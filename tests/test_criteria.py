import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from layerlth import build_model, removable_blocks, score_blocks
from layerlth.criteria import CRITERIA
from layerlth.criteria.grasp import grasp
from layerlth.criteria.weights import aggregate, prunable_weights


def batches(n=2, size=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 32, 32, generator=g, dtype=dtype), torch.randint(10, (size,), generator=g))
            for _ in range(n)]


def with_dead_block(name="stage2.block2"):
    model = build_model("resnet20")
    with torch.no_grad():
        for weight in prunable_weights(model.get_submodule(name)).values():
            weight.zero_()
    return model, name


@pytest.mark.parametrize("criterion", ["snip", "synflow"])
def test_a_block_with_zero_weights_scores_lowest(criterion):
    model, dead = with_dead_block()
    scores = score_blocks(model, criterion, batches())
    assert scores[dead] == 0
    assert min(scores, key=scores.get) == dead
    assert all(s > 0 for name, s in scores.items() if name != dead)


def test_grasp_of_a_block_with_zero_weights_is_zero():
    model, dead = with_dead_block()
    scores = score_blocks(model, "grasp", batches())
    assert scores[dead] == 0 and sum(s != 0 for s in scores.values()) == len(scores) - 1


def test_synflow_scores_every_resnet_block_finitely():
    # the known SynFlow trap: BN in train mode or float32 overflow zero out or blow up scores
    scores = score_blocks(build_model("resnet110"), "synflow", batches(1))
    assert all(0 < s < float("inf") for s in scores.values())


def test_grasp_is_theta_times_hessian_gradient_product():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3)).double()
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.randint(3, (7,))
    w0, b = model[0].weight.detach().clone(), model[0].bias.detach()

    def loss(w):
        return F.cross_entropy(F.linear(x, w, b) / 200.0, y)

    g = torch.autograd.grad(loss(w0.requires_grad_()), w0)[0].flatten()
    hessian = torch.autograd.functional.hessian(loss, w0.detach()).reshape(15, 15)
    expected = (w0.detach().flatten() * (hessian @ g)).reshape(3, 5)
    got = grasp(model, [(x, y)])["0.weight"]
    torch.testing.assert_close(got, expected)


def test_grasp_score_is_how_much_removing_the_block_cuts_gradient_flow():
    # d/de ||g(theta - e * theta_block)||^2 at e=0 equals -2 * theta_block . H g: a block with a high
    # GraSP score is one whose removal reduces the gradient norm most, hence "important"
    model = build_model("resnet20").double()
    data = batches(1, dtype=torch.float64)
    scores = score_blocks(model, "grasp", data)

    def grad_norm(net):
        net = copy.deepcopy(net).train()
        weights = list(prunable_weights(net).values())
        inputs, labels = data[0]
        grads = torch.autograd.grad(F.cross_entropy(net(inputs) / 200.0, labels), weights)
        return sum(float((g**2).sum()) for g in grads)

    base, eps = grad_norm(model), 1e-5
    for name, score in scores.items():
        shrunk = copy.deepcopy(model)
        with torch.no_grad():
            for weight in prunable_weights(shrunk.get_submodule(name)).values():
                weight.mul_(1 - eps)
        derivative = (grad_norm(shrunk) - base) / eps
        assert derivative == pytest.approx(-2 * score, rel=1e-3, abs=1e-12), name


def test_scoring_leaves_the_model_untouched():
    model = build_model("resnet20")
    before = copy.deepcopy(model.state_dict())
    for criterion in CRITERIA:
        score_blocks(model, criterion, batches(1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_random_is_one_seeded_draw_per_block():
    model = build_model("resnet56")
    a = score_blocks(model, "random", seed=1)
    assert a == score_blocks(model, "random", seed=1)
    assert a != score_blocks(model, "random", seed=2)
    assert set(a) == set(removable_blocks(model))


def test_aggregate_sum_and_mean():
    weight_scores = {"b1.conv.weight": torch.ones(4), "b1.fc.weight": torch.ones(2) * 4, "b2.conv.weight": torch.ones(3)}
    assert aggregate(weight_scores, ["b1", "b2"], "sum") == {"b1": 12.0, "b2": 3.0}
    assert aggregate(weight_scores, ["b1", "b2"], "mean") == {"b1": 2.0, "b2": 1.0}
    with pytest.raises(ValueError, match="unknown aggregate 'max'"):
        aggregate(weight_scores, ["b1"], "max")


def test_unknown_criterion_and_missing_data_are_named():
    model = build_model("resnet20")
    with pytest.raises(ValueError, match="unknown criterion 'grasp2'.*'grasp'"):
        score_blocks(model, "grasp2", batches(1))
    with pytest.raises(ValueError, match="'snip' needs batches"):
        score_blocks(model, "snip", [])
