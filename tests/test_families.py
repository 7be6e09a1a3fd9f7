"""Layer tickets for any residual network: torchvision's families and vision transformers found by
their block classes, a user's own `module:callable`, criteria and MACs on every family."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F

from layerlth import TrialConfig, cli
from layerlth.criteria import check_applicable, score_blocks
from layerlth.foundations.arch_names import check_arch
from layerlth.measure.costs import count_macs, count_params
from layerlth.models import (
    build_model,
    checked_network,
    describe_blocks,
    max_removable,
    remove_blocks,
    select_lowest,
)
from layerlth.models.blocks import PHYSICAL_ONLY
from layerlth.tickets.validate import validate

# family: (residual blocks, physically removable, removable under the default rule (flagged),
# at most removable under the default rule); README's family table shows the same counts
FAMILIES = {
    "resnet18": (8, 5, 0, 0),
    "resnet34": (16, 13, 12, 8),
    "resnet50": (16, 12, 12, 8),
    "resnet101": (33, 29, 29, 25),
    "resnet152": (50, 46, 46, 42),
    "wide_resnet50_2": (16, 12, 12, 8),
    "resnext50_32x4d": (16, 12, 12, 8),
    "convnext_tiny": (18, 18, 17, 10),
    "swin_t": (12, 12, 6, 4),
    "efficientnet_b0": (16, 9, 7, 4),
    "mobilenet_v2": (17, 10, 9, 5),
    "mobilenet_v3_small": (11, 6, 4, 2),
    "mobilenet_v3_large": (15, 9, 7, 4),
    "regnet_y_400mf": (16, 12, 12, 9),
    "vit_b_16": (12, 12, 11, 10),
    "vit_cifar": (6, 6, 5, 4),
}


def removed_params(model, names):
    return sum(count_params(model.get_submodule(n)) for n in names)


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_every_family_has_its_residual_blocks_found(arch):
    blocks, physical, flagged, most = FAMILIES[arch]
    dense = build_model(arch, num_classes=10, image_size=32)
    infos = describe_blocks(dense, PHYSICAL_ONLY)
    assert (len(infos), sum(i.removable for i in infos)) == (blocks, physical)
    assert (sum(i.removable for i in describe_blocks(dense)), max_removable(dense)) == (flagged, most)


HEAVY = ("resnet101", "resnet152", "wide_resnet50_2", "resnext50_32x4d")  # block classes resnet50 already has


@pytest.mark.parametrize("arch", [a if a not in HEAVY else pytest.param(a, marks=pytest.mark.slow) for a in sorted(FAMILIES)])
def test_every_family_grasp_ticket_trains_and_loses_exactly_its_blocks_macs(arch):
    torch.manual_seed(0)
    dense = build_model(arch, num_classes=10, image_size=32)
    infos = describe_blocks(dense, PHYSICAL_ONLY)
    # GraSP at init, p = 2 under the physical rule (resnet18's default rule allows none)
    x, y = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(2)
    candidates = [i.name for i in infos if i.removable]
    scores = score_blocks(dense, "grasp", [(x, y)], blocks=candidates)
    assert all(torch.isfinite(torch.tensor(list(scores.values()))))
    chosen = select_lowest(dense, scores, 2, PHYSICAL_ONLY)
    ticket = remove_blocks(dense, chosen)
    # physically shallower: the removed blocks' parameters are gone, nothing left behind
    assert count_params(ticket) == count_params(dense) - removed_params(dense, chosen)
    assert not any(name.startswith(tuple(c + "." for c in chosen)) for name, _ in ticket.named_parameters())
    # MACs drop by exactly the removed blocks' own MACs
    full = count_macs(dense)
    own = [full - count_macs(remove_blocks(dense, [name])) for name in chosen]
    assert min(own) > 0 and full - count_macs(ticket) == sum(own)
    # and the ticket trains
    optimizer = torch.optim.SGD(ticket.parameters(), lr=0.01)
    before = [p.detach().clone() for p in ticket.parameters()]
    F.cross_entropy(ticket.train()(x), y).backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, ticket.parameters()))


def vit_macs(patches, hidden, mlp, layers, patch, classes, channels=3):
    n = patches + 1  # the class token
    block = 4 * n * hidden**2 + 2 * n**2 * hidden + 2 * n * hidden * mlp
    return patches * hidden * channels * patch**2 + layers * block + hidden * classes


@pytest.mark.parametrize("arch, image, expected", [
    ("vit_cifar", 32, vit_macs(64, 256, 512, 6, 4, 10)),
    ("vit_b_16", 32, vit_macs(4, 768, 3072, 12, 16, 10)),
    ("vit_cifar", 16, vit_macs(16, 256, 512, 6, 4, 10)),
])
def test_vit_macs_equal_the_analytic_count(arch, image, expected):
    model = build_model(arch, image_size=image)
    assert count_macs(model, (3, image, image)) == expected
    ticket = remove_blocks(model, ["encoder.layers.encoder_layer_1"])
    per_block = count_macs(model, (3, image, image)) - count_macs(ticket, (3, image, image))
    n, d = (image // {"vit_cifar": 4, "vit_b_16": 16}[arch]) ** 2 + 1, model.hidden_dim
    assert per_block == 4 * n * d * d + 2 * n * n * d + 2 * n * d * model.encoder.layers[0].mlp[0].out_features


def test_a_vit_is_built_for_its_image_size():
    with pytest.raises(ValueError, match="'vit_cifar' cuts 4x4 patches: the image side must be a multiple of 4, got 30"):
        build_model("vit_cifar", image_size=30)
    with pytest.raises(ValueError, match="'vit_b_16' cuts 16x16 patches.* got 8"):
        validate(TrialConfig(arch="vit_b_16", dataset="digits", p=1))
    assert validate(TrialConfig(arch="vit_cifar", dataset="digits", p=1)).arch == "vit_cifar"  # 8x8: 4 patches


def test_names_mean_one_thing_and_old_meanings_are_never_reused():
    assert type(build_model("resnet50")).__module__.startswith("torchvision")
    assert sum(1 for _ in describe_blocks(build_model("cifar_resnet50"))) == 24  # 3 stages of n = 8
    # resnet50 once matched the CIFAR 6n+2 pattern: its stored results now belong to cifar_resnet50
    old = {"arch": "resnet50", "p": 2}
    import hashlib

    digest = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:12]
    assert TrialConfig(arch="cifar_resnet50", p=2).hash() == digest
    assert TrialConfig(arch="resnet50", p=2).hash() != digest
    assert TrialConfig(arch="cifar_resnet50", p=2).dense_key() != TrialConfig(arch="resnet50", p=2).dense_key()
    assert TrialConfig(arch="resnet56", p=2).hash() == TrialConfig(arch="cifar_resnet56", p=2).hash()
    with pytest.raises(ValueError, match=r"unknown arch 'resnet26' \(the CIFAR ResNet of that depth is 'cifar_resnet26'\); "
                                         r"allowed: CIFAR ResNets: .*torchvision: resnet18, .*vit_cifar"):
        check_arch("resnet26")
    with pytest.raises(ValueError, match="6n\\+2 layers"):
        check_arch("cifar_resnet27")


def test_criteria_refuse_families_where_they_have_no_meaning():
    vit = build_model("vit_cifar")
    with pytest.raises(ValueError, match="'synflow' assumes a positively homogeneous net, but vit_cifar has "
                                         r"\['LayerNorm', 'MultiheadAttention'\]"):
        check_applicable("synflow", vit, "vit_cifar")
    for criterion in ("hrank", "expectabs", "pls"):
        with pytest.raises(ValueError, match=f"'{criterion}' is defined on .* maps, but vit_cifar's blocks "
                                             r"\['EncoderBlock'\] compute on tokens"):
            validate(TrialConfig(arch="vit_cifar", kind="after_training", criterion=criterion, p=1, dataset="synthetic"))
    with pytest.raises(ValueError, match="synflow"):
        validate(TrialConfig(arch="convnext_tiny", criterion="synflow", p=1, dataset="synthetic"))
    for criterion in ("cka", "kl", "random", "snip", "grasp"):
        check_applicable(criterion, vit)


@pytest.mark.parametrize("arch", ["convnext_tiny", "efficientnet_b0", "vit_cifar"])
def test_trained_net_criteria_score_other_families(arch):
    torch.manual_seed(0)
    model = build_model(arch, image_size=32)
    batches = [(torch.randn(12, 3, 32, 32), torch.arange(12) % 10)]
    blocks = [i.name for i in describe_blocks(model) if i.removable][:2]
    allowed = ("cka", "kl") if arch == "vit_cifar" else ("hrank", "expectabs", "pls", "kl", "cka")
    for criterion in allowed:
        scores = score_blocks(model, criterion, batches, blocks=blocks)
        assert list(scores) == blocks and all(s == s for s in scores.values()), (criterion, scores)


def test_synflow_scores_convolutional_families_from_all_weights():
    model = build_model("resnet50")
    scores = score_blocks(model, "synflow", [], blocks=["layer1.1", "layer3.2"], input_size=(3, 32, 32))
    assert all(s > 0 for s in scores.values())


def test_attention_weights_count_in_at_init_scores():
    """in_proj_weight is a Parameter of MultiheadAttention, not of a Linear: it must be scored."""
    from layerlth.criteria.weights import prunable_weights

    names = prunable_weights(build_model("vit_cifar"))
    assert "encoder.layers.encoder_layer_0.self_attention.in_proj_weight" in names
    assert "encoder.layers.encoder_layer_0.ln_1.weight" not in names


# --- a user's own model ---------------------------------------------------------------------------

def test_user_model_through_layerlth_ticket(capsys):
    assert cli.main(["ticket", "--arch", "user_model:build", "--dataset", "digits", "-p", "1", "--epochs", "1",
                     "--criterion", "snip", "--no-emissions", "--score-batches", "1", "--json"]) in (0, None)
    row = json.loads(capsys.readouterr().out)
    assert row["arch"] == "user_model:build" and row["removed"] and row["removed"][0].startswith("2.")
    assert row["macs"] < row["dense_macs"] and row["final_test_acc"] is not None


@pytest.mark.parametrize("arch, message", [
    ("user_model:missing", "'user_model:missing': user_model has no callable 'missing'"),
    ("no_such_package.nets:build", "cannot import 'no_such_package.nets' .*importable on the driver and on every node"),
    ("user_model:not_a_module", "returned a str, not a torch.nn.Module"),
    ("user_model:plain", "'user_model:plain': Sequential has no residual blocks layerlth knows; declare"),
    ("user_model:build()", "unknown arch"),
])
def test_user_model_errors_name_the_entry(arch, message):
    checked_network.cache_clear()
    with pytest.raises(ValueError, match=message):
        validate(TrialConfig(arch=arch, dataset="synthetic", p=1))


def test_register_block_refuses_what_it_cannot_use():
    from layerlth import register_block

    with pytest.raises(TypeError, match="needs an nn.Module subclass, got 'Mix'"):
        register_block("Mix")
    with pytest.raises(ValueError, match="unknown layout 'nchw'; allowed: \\['conv', 'tokens'\\]"):
        register_block(torch.nn.Identity, layout="nchw")


def test_a_planted_checkpoint_naming_another_callable_is_not_imported(tmp_path, monkeypatch):
    from layerlth.training.checkpoints import UnsafeCheckpoint, load_state

    mark = tmp_path / "imported"
    monkeypatch.setenv("LAYERLTH_PLANTED_MARK", str(mark))
    config = TrialConfig(arch="user_model:build", dataset="synthetic")
    model = build_model("user_model:build")
    planted = {"state_dict": model.state_dict(), "epoch": 1,
               "architecture": {"arch": "planted_arch:build", "shortcut": "B", "num_classes": 10, "in_channels": 3,
                                "image_size": 32, "removed": [], "filters": {}}}
    torch.save(planted, tmp_path / "state.pt")
    with pytest.raises(UnsafeCheckpoint, match="'planted_arch:build'.*not of the trial's 'user_model:build'"):
        load_state(tmp_path / "state.pt", config)
    assert "planted_arch" not in sys.modules and not mark.exists()


def test_user_model_in_a_sweep_on_ray(ray_session, tmp_path):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "sweeps"))
    import run as sweep_cli

    grid = tmp_path / "grid.yaml"
    grid.write_text("name: own\ndefaults: {arch: 'user_model:build', dataset: digits, epochs: 1, score_batches: 1, "
                    "emissions: false}\nstudies:\n  - {kind: dense}\n  - {kind: at_init, criterion: grasp, p: 2}\n")
    assert sweep_cli.main(["--grid", str(grid), "--no-wandb", "--storage", str(tmp_path / "store")]) == 0
    rows = [json.loads(p.read_text()) for p in (tmp_path / "store" / "own" / "trials").glob("*/result.json")]
    assert sorted((r["status"], r["p"]) for r in rows) == [("finished", 0), ("finished", 2)]
    ticket = next(r for r in rows if r["p"])
    assert len(ticket["removed"]) == 2 and ticket["arch"] == "user_model:build"
