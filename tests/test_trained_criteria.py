import numpy as np
import pytest
import torch

from layerlth import build_model, score_blocks
from layerlth.criteria.trained import vip
from layerlth.criteria.weights import prunable_weights

LAST = "stage3.block3"


def batches(n=2, size=32):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(10, (size,), generator=g)) for _ in range(n)]


def with_zero_output(name=LAST):
    """y = relu(f(x) + x - 1e6) = 0: a block whose output is zero (BN in eval mode)."""
    model = build_model("resnet20").eval()
    with torch.no_grad():
        model.get_submodule(name).bn2.bias.fill_(-1e6)
    return model


def with_identity(name="stage2.block2"):
    """conv2 = 0 makes f(x) = 0, and x >= 0 after the previous ReLU: y = relu(x) = x exactly."""
    model = build_model("resnet20").eval()
    with torch.no_grad():
        model.get_submodule(name).conv2.weight.zero_()
    return model, name


@pytest.mark.parametrize("criterion", ["expectabs", "hrank"])
def test_a_block_whose_output_is_zero_scores_lowest(criterion):
    scores = score_blocks(with_zero_output(), criterion, batches())
    assert scores[LAST] == 0 and min(scores, key=scores.get) == LAST
    assert all(s > 0 for name, s in scores.items() if name != LAST)


def test_an_exact_identity_block_has_zero_kl_effect():
    model, identity = with_identity()
    scores = score_blocks(model, "kl", batches())
    assert scores[identity] == pytest.approx(0, abs=1e-9)
    assert all(s > 1e-6 for name, s in scores.items() if name != identity)


def test_l1_is_the_sum_of_absolute_weights():
    model = build_model("resnet20")
    scores = score_blocks(model, "l1")
    expected = sum(float(w.detach().abs().sum()) for w in prunable_weights(model.get_submodule("stage2.block2")).values())
    assert scores["stage2.block2"] == pytest.approx(expected)
    assert scores["stage1.block2"] < scores["stage3.block2"]  # the early-stage bias the paper rejects


def test_vip_ranks_the_informative_feature_first():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    targets = np.eye(3)[labels]
    features = rng.normal(size=(300, 5))
    features[:, 2] += 3 * labels  # only feature 2 carries the label
    importance = vip(features, targets)
    assert importance.argmax() == 2 and importance[2] > 1 > importance[[0, 1, 3, 4]].max()
    assert (importance**2).sum() == pytest.approx(5)  # VIPs square-sum to the feature count


def test_pls_scores_every_block_from_its_channels():
    model = build_model("resnet20").eval()
    scores = score_blocks(model, "pls", batches(3))
    assert len(scores) == 6 and all(s > 0 for s in scores.values())
