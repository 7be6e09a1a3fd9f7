"""Iterative block removal at initialisation (`rounds`): k = 1 is the paper's one shot, k rounds
re-score the shallower net, the removal rule holds every round, and rows keep the two apart."""

from types import SimpleNamespace

import pytest
import torch

from layerlth import TrialConfig
from layerlth.criteria import score_blocks
from layerlth.data import load_dataset
from layerlth.models import build_model, describe_blocks, removable_blocks, remove_blocks, select_lowest
from layerlth.models.filters import filter_count
from layerlth.tickets.procedures import (
    at_init,
    filter_ticket,
    removal_rule,
    score_and_remove,
    scoring_batches,
)
from layerlth.tickets.rounds import remove_in_rounds, round_sizes
from layerlth.tickets.trial import initial_dense
from layerlth.tickets.validate import validate
from layerlth.tickets.verdict import verdicts


def test_each_round_removes_ceil_of_what_is_left_over_the_rounds_left():
    assert round_sizes(3, 1) == [3]
    assert round_sizes(5, 5) == [1, 1, 1, 1, 1]
    assert round_sizes(5, 2) == [3, 2]
    assert round_sizes(12, 5) == [3, 3, 2, 2, 2]


def test_one_round_hashes_as_the_default_and_renames_no_trial():
    pinned = dict(arch="resnet32", dataset="cifar10", criterion="snip", p=5, seed=1)
    assert TrialConfig(**pinned).hash() == "fff60136fa52"  # as before the field existed
    assert TrialConfig(**pinned, rounds=1).hash() == "fff60136fa52"
    assert TrialConfig(**pinned, rounds=5).hash() != "fff60136fa52"
    # a ticket option: iterative and one-shot tickets share their dense run
    assert TrialConfig(**pinned, rounds=5).dense_key() == TrialConfig(**pinned).dense_key()


@pytest.mark.parametrize("values,message", [
    (dict(p=3, rounds=4), r"rounds=4 is not possible with p=3: allowed 1\.\.3"),
    (dict(p=0, rounds=2), r"rounds=2 is not possible with p=0: allowed 1\.\.1"),
    (dict(p=3, rounds=0), r"rounds=0: expected an integer >= 1"),
])
def test_rounds_outside_1_to_p_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        validate(TrialConfig.from_dict(dict(arch="resnet32", **values)))


def test_one_round_is_the_one_shot_choice():
    config = TrialConfig(arch="resnet32", criterion="synflow", p=5)
    torch.manual_seed(0)
    dense = build_model("resnet32")
    scores = score_blocks(dense, "synflow", (), removable_blocks(dense, removal_rule(config)), seed=0,
                          input_size=(3, 32, 32))
    ticket, facts = score_and_remove(dense, config)
    assert facts["removed"] == select_lowest(dense, scores, 5, removal_rule(config))
    assert facts["removal_rounds"] == [{"scores": facts["scores"], "removed": facts["removed"]}]
    assert [n for n, _ in ticket.named_modules()] == [n for n, _ in remove_blocks(dense, facts["removed"]).named_modules()]


# ResNet32 at init, SNIP on 2 batches of 32 digits, seed 2: one shot and 3 rounds differ in one block
DIFFERING = dict(arch="resnet32", dataset="digits", criterion="snip", p=3, seed=2, score_batches=2,
                 score_batch_size=32)
ONE_SHOT = ["stage2.block5", "stage1.block5", "stage3.block5"]
ITERATIVE = ["stage2.block5", "stage1.block5", "stage1.block4"]


def test_iterative_choice_is_an_independent_score_remove_loop_and_differs_from_one_shot():
    data = load_dataset(DIFFERING["dataset"])
    config = TrialConfig(**DIFFERING, rounds=3)
    dense = initial_dense(config, data, torch.device("cpu"))
    ticket, facts, start = at_init(dense, config, data)
    # the loop, written out: score the current net, remove its lowest allowed block, rebuild, repeat
    batches, rule, net, order = scoring_batches(data, config), removal_rule(config), dense, []
    for _ in range(3):
        blocks = removable_blocks(net, rule)  # forward order: min() breaks ties as select_lowest does
        scores = score_blocks(net, "snip", batches, blocks, seed=2, input_size=data.image_size)
        lowest = min(blocks, key=scores.get)
        order.append(lowest)
        net = remove_blocks(net, [lowest])
    assert facts["removed"] == order == ITERATIVE and start == 0
    assert [step["removed"] for step in facts["removal_rounds"]] == [[name] for name in ITERATIVE]
    one_shot = select_lowest(dense, facts["scores"], 3, rule)  # round 1 scores the dense net
    assert one_shot == ONE_SHOT != ITERATIVE
    assert all(torch.equal(a, b) for a, b in zip(ticket.state_dict().values(), net.state_dict().values()))


def _stage_sizes(model):
    sizes = {}
    for info in describe_blocks(model):
        sizes[info.stage] = sizes.get(info.stage, 0) + 1
    return sizes


@pytest.mark.parametrize("rounds", [1, 2, 5])
def test_the_removal_rule_holds_in_every_round(rounds):
    """Scores that make stage 1 the cheapest: each round may take only what stage 1 still has
    beyond its minimum, counting the blocks earlier rounds removed."""
    dense = build_model("resnet32")  # 5 blocks per stage; a stage keeps 2, the first block stays
    rule = removal_rule(TrialConfig())
    nets = []

    def score(net):
        nets.append(net)
        return {name: (0.0 if name.startswith("stage1") else 1.0) for name in removable_blocks(net, rule)}

    ticket, history = remove_in_rounds(dense, score, 5, rounds, rule)
    for net in [*nets, ticket]:
        assert min(_stage_sizes(net).values()) >= 2 and hasattr(net.stage1, "block1")
    removed = [name for step in history for name in step["removed"]]
    assert sum(name.startswith("stage1") for name in removed) == 3 and len(removed) == 5
    assert _stage_sizes(ticket) == {1: 2, 2: 3, 3: 5}  # the rest by forward order (ties)


def test_an_iterative_tickets_checkpoint_rebuilds_the_same_net(tmp_path):
    from layerlth.sweep.tune.trainable import checkpoint_state, load_state
    from layerlth.training.loop import EpochState

    config = TrialConfig(arch="resnet32", criterion="synflow", p=5, rounds=5)
    torch.manual_seed(0)
    ticket, facts, _ = at_init(build_model("resnet32"), config, None)
    optimizer = torch.optim.SGD(ticket.parameters(), lr=0.1, momentum=0.9)
    state = EpochState(2, ticket, optimizer, {"test_acc": 0.5}, [{"epoch": 2, "test_acc": 0.5}],
                       {**facts, "start_epoch": 0})
    torch.save(checkpoint_state(state, config, [0]), tmp_path / "state.pt")
    resumed = load_state(tmp_path / "state.pt", SimpleNamespace(arch="resnet32", shortcut="B", dataset="digits"))
    model = resumed["model"]
    assert [n for n, _ in model.named_modules()] == [n for n, _ in ticket.named_modules()]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ticket.state_dict().values()))
    assert resumed["context"]["removed"] == facts["removed"]
    assert resumed["context"]["removal_rounds"] == facts["removal_rounds"]


def test_a_filter_ticket_targets_the_layer_ticket_chosen_the_same_way():
    torch.manual_seed(0)
    dense = build_model("resnet32")
    for rounds in (1, 5):
        config = TrialConfig(kind="filter", arch="resnet32", criterion="synflow", p=5, rounds=rounds)
        ticket, facts, _ = filter_ticket(dense, config, None)
        _, layer, _ = at_init(dense, TrialConfig(arch="resnet32", criterion="synflow", p=5, rounds=rounds), None)
        assert facts["layer_ticket_removed"] == layer["removed"]
        assert filter_count(ticket) == filter_count(remove_blocks(dense, layer["removed"]))


def _row(kind="at_init", p=2, acc=0.9, seed=0, **extra):
    return dict(arch="resnet20", dataset="digits", shortcut="B", recipe="he2016", epochs=2, train_subset=None,
                kind=kind, criterion="grasp", p=p, rewind=0, reinit=False, seed=seed, final_test_acc=acc, **extra)


def test_rows_without_rounds_group_with_one_shot_and_never_with_iterative():
    from layerlth.analysis.rows import ticket_groups

    rows = [_row("dense", 0, 0.90), _row(acc=0.80), _row(acc=0.82, seed=1, rounds=1), _row(acc=0.88, rounds=2),
            _row(acc=0.86, seed=1, rounds=float("nan"))]  # an empty table cell: one shot
    table = {v["rounds"]: v for v in verdicts(rows)}
    assert sorted(table) == [1, 2]
    assert table[1]["ticket_n"] == 3 and table[2]["ticket_n"] == 1
    assert table[2]["ticket_mean"] == pytest.approx(88)
    assert sorted(len(group) for group in ticket_groups(rows).values()) == [1, 3]
