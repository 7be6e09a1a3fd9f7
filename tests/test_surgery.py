import torch

from layerlth import build_model, remove_blocks
from layerlth.models.cifar_resnet import CifarResNet

REMOVED = ["stage1.block2", "stage2.block3", "stage3.block2"]


def test_pruned_output_equals_hand_built_shallower_model():
    dense = build_model("resnet20").eval()
    ticket = remove_blocks(dense, REMOVED).eval()
    # the same architecture written by hand: 2 blocks a stage, numbered 1..2
    hand = CifarResNet((2, 2, 2)).eval()
    rename = {"stage1.block3": "stage1.block2", "stage2.block2": "stage2.block2", "stage3.block3": "stage3.block2"}
    state = {}
    for key, value in ticket.state_dict().items():
        block = ".".join(key.split(".")[:2])
        state[key.replace(block, rename[block], 1) if block in rename else key] = value
    hand.load_state_dict(state, strict=True)
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(ticket(x), hand(x))


def test_surgery_keeps_dense_weights_and_leaves_original_untouched():
    dense = build_model("resnet20")
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    ticket = remove_blocks(dense, REMOVED)
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())
    assert len(dense.state_dict()) == len(before)
    kept = ticket.state_dict()
    assert all(torch.equal(before[k], v) for k, v in kept.items())  # dense's own init weights
    assert not any(k.startswith(tuple(n + "." for n in REMOVED)) for k in kept)
    assert len(ticket.stage1) == 2 and len(dense.stage1) == 3  # physically gone


def test_gradients_flow_through_every_kept_block():
    ticket = remove_blocks(build_model("resnet20"), REMOVED)
    torch.nn.functional.cross_entropy(ticket(torch.randn(4, 3, 32, 32)), torch.arange(4)).backward()
    for name, param in ticket.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_state_dict_round_trips_into_the_ticket_architecture():
    ticket = remove_blocks(build_model("resnet32"), REMOVED).eval()
    fresh = build_model("resnet32", removed=REMOVED).eval()
    fresh.load_state_dict(ticket.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(fresh(x), ticket(x))


def test_shape_changing_and_unknown_blocks_are_refused():
    import pytest

    model = build_model("resnet20")
    with pytest.raises(ValueError, match="stage2.block1.*resolution or width"):
        remove_blocks(model, ["stage2.block1"])
    with pytest.raises(ValueError, match="'fc' is not a residual block"):
        remove_blocks(model, ["fc"])
