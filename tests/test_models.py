import pytest

from layerlth import build_model, count_macs, count_params, describe_blocks, removable_blocks, remove_blocks
from layerlth.models import RemovalRule, max_removable, select_lowest

# He et al. 2016, Table 6 (parameter-free option A shortcuts)
HE_PARAMS = {"resnet20": "0.27", "resnet32": "0.46", "resnet56": "0.85", "resnet110": "1.7"}


@pytest.mark.parametrize("arch,millions", HE_PARAMS.items())
def test_parameter_counts_match_he_et_al(arch, millions):
    decimals = len(millions.split(".")[1])  # compare at the precision the paper prints
    assert round(count_params(build_model(arch, shortcut="A")) / 1e6, decimals) == float(millions)


@pytest.mark.parametrize("arch,macs", [("resnet32", 69.1), ("resnet56", 125.7)])
def test_macs_with_projection_shortcuts_match_paper(arch, macs):
    assert round(count_macs(build_model(arch, shortcut="B")) / 1e6, 1) == macs


def test_one_basic_block_is_4_72M_macs_at_every_stage():
    model = build_model("resnet32")
    for name in removable_blocks(model, RemovalRule(keep_first=False, min_per_stage=1)):
        saved = count_macs(model) - count_macs(remove_blocks(model, [name]))
        assert round(saved / 1e6, 2) == 4.72, name


# Table 4 of the paper, FLOPs column (% reduction); ResNet32's p=4 row holds the figure of p=5
@pytest.mark.parametrize(
    "arch,p,reduction",
    [("resnet32", 1, 6.82), ("resnet32", 3, 20.47), ("resnet32", 5, 34.13),
     ("resnet56", 3, 11.25), ("resnet56", 4, 15.00), ("resnet56", 5, 18.76), ("resnet56", 12, 45.00)],
)
def test_removing_p_blocks_reproduces_table4_flops(arch, p, reduction):
    model = build_model(arch)
    scores = {name: i for i, name in enumerate(removable_blocks(model))}
    ticket = remove_blocks(model, select_lowest(model, scores, p))
    measured = 100 * (1 - count_macs(ticket) / count_macs(model))
    assert measured == pytest.approx(reduction, abs=0.06)


def test_removability_rules_and_reasons():
    blocks = {b.name: b for b in describe_blocks(build_model("resnet20"))}
    assert "first block" in blocks["stage1.block1"].reason
    assert "resolution or width" in blocks["stage2.block1"].reason
    assert blocks["stage3.block3"].removable and blocks["stage3.block3"].stage == 3
    # min_per_stage=2 with 3 blocks a stage: one block per stage at most
    assert max_removable(build_model("resnet20")) == 3
    assert max_removable(build_model("resnet20"), RemovalRule(keep_first=False, min_per_stage=1)) == 6
    assert max_removable(build_model("resnet56")) == 21


def test_block_names_are_module_paths():
    model = build_model("resnet56")
    for info in describe_blocks(model):
        assert type(model.get_submodule(info.name)).__name__ == "BasicBlock"


def test_selection_respects_the_minimum_per_stage():
    model = build_model("resnet20")
    # stage1's blocks score lowest, but stage 1 may lose only one
    scores = {"stage1.block2": 0, "stage1.block3": 1, "stage2.block2": 5, "stage2.block3": 3, "stage3.block2": 9,
              "stage3.block3": 7}
    assert select_lowest(model, scores, 3) == ["stage1.block2", "stage2.block3", "stage3.block3"]
    with pytest.raises(ValueError, match="p=4.*0..3"):
        select_lowest(model, scores, 4)


@pytest.mark.parametrize("arch,removable", [("resnet18", 5), ("mobilenet_v2", 10)])
def test_torchvision_families_have_removable_blocks(arch, removable):
    import torch

    model = build_model(arch, num_classes=10)
    rule = RemovalRule(keep_first=False, min_per_stage=1)
    names = removable_blocks(model, rule)
    assert len(names) == removable
    ticket = remove_blocks(model, names[:2])
    assert ticket(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert count_macs(ticket) < count_macs(model)


def test_unknown_arch_names_allowed_values():
    with pytest.raises(ValueError, match="unknown arch 'resnet21'.*resnet20"):
        build_model("resnet21")
