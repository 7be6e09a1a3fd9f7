"""Fused packs on a CPU: k runs of one CIFAR ResNet architecture trained as one fused step compute
what each computes alone (float64: to 1e-12; tickets through ghost blocks; per-member learning
rates), hand their state over to solo training and back, and leave without disturbing the others.
Real CIFAR-10 images (the committed fixture)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from layerlth.data import load_dataset
from layerlth.foundations.recipes import get_recipe
from layerlth.models.cifar_resnet import cifar_resnet
from layerlth.models.surgery import remove_blocks
from layerlth.training.boundary import RunTerms
from layerlth.training.loop import Run, TrainingDiverged
from layerlth.training.packs.fused_group import FusedGroup
from layerlth.training.packs.pack import Pack, Works

# (seed, removed blocks, start epoch, lr): dense nets, tickets with different removed blocks (ghosts
# in their slots) and a member one epoch ahead (another lr from the same schedule)
MEMBERS = [(0, (), 0, None), (1, ("stage1.block2", "stage3.block3"), 0, None), (2, ("stage2.block2",), 1, 0.02),
           (3, (), 0, 0.005)]


@pytest.fixture(scope="module")
def data(cifar_fixture):
    return load_dataset(cifar_fixture).subset(train=70, test=64)  # 2 batches of 32 and a partial one of 6


def in_float64(data):
    data = data.subset()
    data.__dict__["channel_stats"] = tuple(t.double() for t in data.channel_stats)  # batches in float64
    return data


def make_run(data, seed, removed=(), start=0, lr=None, dtype=torch.float64, epochs=2, callbacks=(), stop=None,
             label="run", fuse=True, **kwargs):
    """A run of resnet20 (less `removed`) from epoch `start` of an `epochs`-epoch paper recipe (lr 0.01,
    Nesterov), stopping after `stop` epochs if given; a pack may fuse it (`fuse`)."""
    torch.manual_seed(seed)
    model = cifar_resnet(20, 10)
    model = (remove_blocks(model, list(removed)) if removed else model).to(dtype)
    recipe = get_recipe("paper").scaled(epochs=start + epochs, batch_size=32, lr=lr)
    run = Run(model, data, recipe, seed=seed, start_epoch=start, callbacks=callbacks,
              stop_epoch=None if stop is None else start + stop,
              terms=RunTerms(label=label, fuse=fuse, fuse_tag=("resnet20", "B")), **kwargs)
    return run


def trained(runs, slots):
    """Train the runs in a pack of `slots` (1: each alone); {index: Finished}."""
    def work(run):
        yield run
        return run.history
    return {f.key: f for f in Pack(slots).run(Works([(n, work(run)) for n, run in enumerate(runs)]))}


def differences(a, b):
    """The largest difference between two runs' weights, BN statistics and momentum."""
    states = [r.model.state_dict() for r in (a, b)]
    weights = max((states[0][k].double() - states[1][k].double()).abs().max().item() for k in states[0])
    moments = [[r.optimizer.state[p]["momentum_buffer"] for p in r.model.parameters()] for r in (a, b)]
    momentum = max((x - y).abs().max().item() for x, y in zip(*moments))
    return weights, momentum


def test_fused_members_compute_what_each_computes_alone_in_float64(data):
    data = in_float64(data)
    alone = [make_run(data, *m) for m in MEMBERS]
    fused = [make_run(data, *m) for m in MEMBERS]
    trained(alone, 1)
    trained(fused, len(fused))
    for a, f in zip(alone, fused):
        weights, momentum = differences(a, f)
        assert weights <= 1e-12 and momentum <= 1e-12
        assert [h["test_acc"] for h in a.history] == [h["test_acc"] for h in f.history]
        assert [h["train_loss"] for h in a.history] == pytest.approx([h["train_loss"] for h in f.history], abs=1e-12)
        assert [h["lr"] for h in a.history] == [h["lr"] for h in f.history]
    # three joined at epoch 0; the member starting at epoch 1 (a 2-epoch run of a 3-epoch schedule)
    # trained in step with them: all four in one group, the tickets with ghosts in their slots
    assert [f.report.fused_group_size for f in fused] == [4] * 4
    assert [f.report.ghost_blocks for f in fused] == [0, 2, 1, 0]
    assert [a.report.fused_group_size for a in alone] == [1] * 4


def in_two_halves(data, members, first, then):
    """Each member's first epoch in a pack of `first` slots, then its second resumed from what its
    checkpoint holds (weights, buffers, optimizer) in a pack of `then`: the resumed runs."""
    halves = [make_run(data, *m, stop=1) for m in members]
    trained(halves, first)
    resumed = []
    for (seed, removed, start, lr), run in zip(members, halves):
        again = make_run(data, seed, removed, start + 1, lr, epochs=1)  # the same 2-epoch schedule
        again.model.load_state_dict(run.model.state_dict())
        again.optimizer.load_state_dict(run.optimizer.state_dict())
        resumed.append(again)
    trained(resumed, then)
    return resumed


def test_a_checkpoint_moves_between_fused_and_solo_training(data):
    data = in_float64(data)
    members = MEMBERS[:2]
    uninterrupted = [make_run(data, *m) for m in members]
    trained(uninterrupted, 2)
    resumed, refused = in_two_halves(data, members, 2, 1), in_two_halves(data, members, 1, 2)  # fused first; alone
    assert [r.report.fused_group_size for r in refused] == [2, 2]
    assert [r.report.fused_group_size for r in resumed] == [1, 1]
    for whole, a, b in zip(uninterrupted, resumed, refused):
        assert max(differences(whole, a)) <= 1e-12 and max(differences(whole, b)) <= 1e-12
        assert whole.history[-1]["test_acc"] == a.history[-1]["test_acc"] == b.history[-1]["test_acc"]


def test_a_member_that_stops_diverges_or_fails_leaves_the_others_unchanged(data):
    data = in_float64(data)

    def stop_after_first(state):
        return state.epoch == 1

    def fail_after_first(state):
        if state.epoch == 1:
            raise RuntimeError("a callback failed")

    def runs():
        return [make_run(data, 0, epochs=3), make_run(data, 1, epochs=3, callbacks=[stop_after_first]),
                make_run(data, 2, epochs=3, lr=1e6), make_run(data, 3, epochs=3, callbacks=[fail_after_first]),
                make_run(data, 4, ("stage2.block3",), epochs=3)]

    alone, fused = runs(), runs()
    finished_alone, finished = trained(alone, 1), trained(fused, 5)
    assert isinstance(finished[2].error, TrainingDiverged) and isinstance(finished[3].error, RuntimeError)
    assert len(finished[1].result) == 1 and len(finished[0].result) == 3  # stopped early; went on
    for n in (0, 1, 4):
        assert max(differences(alone[n], fused[n])) <= 1e-12
        ours, theirs = finished[n].result, finished_alone[n].result  # the histories
        assert [h["test_acc"] for h in ours] == [h["test_acc"] for h in theirs]
        assert [h["train_loss"] for h in ours] == pytest.approx([h["train_loss"] for h in theirs], abs=1e-12)
    assert fused[0].report.fused_group_size == 5


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def test_a_fused_step_of_four_launches_about_as_many_ops_as_one_member(data):
    runs = [make_run(data, seed, dtype=torch.float32) for seed in range(4)]
    for run in runs:
        run.begin()
    batches = [run.take_batch() for run in runs]
    solo = runs[0]
    solo.stepper.step(*batches[0])  # momentum buffers exist: the steady-state step
    with CountOps() as one:
        solo.stepper.step(*batches[0])
    group = FusedGroup(runs)
    group.set_lrs([0.1] * 4)
    xs, y = torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
    group.step(xs, y)
    with CountOps() as fused:
        group.step(xs, y)
    assert fused.count <= 1.1 * one.count, (fused.count, one.count)


def test_fp32_fused_stays_within_the_spread_of_a_solo_runs_memory_layouts(data):
    members = MEMBERS[:3]
    contiguous = [make_run(data, *m, dtype=torch.float32) for m in members]
    channels_last = [make_run(data, *m, dtype=torch.float32, channels_last=True) for m in members]
    fused = [make_run(data, *m, dtype=torch.float32) for m in members]
    trained(contiguous, 1)
    trained(channels_last, 1)
    trained(fused, 3)
    for c, cl, f in zip(contiguous, channels_last, fused):
        band = max(differences(c, cl)[0], 1e-6)
        assert differences(c, f)[0] <= 4 * band
        assert abs(c.history[-1]["train_loss"] - f.history[-1]["train_loss"]) <= 4 * max(
            abs(c.history[-1]["train_loss"] - cl.history[-1]["train_loss"]), 1e-6)


def test_fuse_auto_follows_what_the_gpu_suite_measured_on_this_kind(monkeypatch):
    from layerlth.foundations import measured
    from layerlth.training.fastpath import fused

    assert fused("cpu", "auto") is False and fused("cpu", True) is True  # no kind has measured it yet
    kind = measured.device_kind("cpu")
    monkeypatch.setattr(measured, "measured_throughput", lambda: {kind: {"fusion": {"faster": True}}})
    assert fused("cpu", "auto") is True and fused("cpu", False) is False
    monkeypatch.setattr(measured, "measured_throughput", lambda: {kind: {"fusion": {"faster": False}}})
    assert fused("cpu", "auto") is False


def test_one_set_of_ops_makes_every_members_batches_bitwise_partial_batch_included(data):
    from layerlth.data.batches import Batches, batched

    def members():
        return [Batches(data, 32, True, torch.Generator().manual_seed(seed)) for seed in range(3)]

    alone = [list(b) for b in members()]
    made = members()
    plans = [b.plan() for b in made]
    assert all(made[0].shares_making_with(b) for b in made)
    sizes, own = [], members()[0]
    for step in range(len(alone[0])):
        one_plan = next(own.plan()) if step == 0 else None
        if one_plan is not None:
            with CountOps() as one:
                own.make(*one_plan)
        with CountOps() as ops:
            x, y = batched(made, [next(p) for p in plans])
        x = x.view(3, -1, *x.shape[1:])
        sizes.append(x.shape[1])
        for i in range(3):
            assert torch.equal(x[i], alone[i][step][0]) and torch.equal(y[i], alone[i][step][1])
    assert sizes == [32, 32, 6] and all(next(p, None) is None for p in plans)
    assert ops.count <= 1.5 * one.count  # three members' augmentation in one set of ops, not three
    other = load_dataset("digits")
    assert not made[0].shares_making_with(Batches(other, 32, True, torch.Generator().manual_seed(0)))


def test_identical_computations_train_once_and_both_rows_say_so(data):
    data = in_float64(data)
    alone = make_run(data, 0)
    trained([alone], 1)
    twins = [make_run(data, 0, label="trial0"), make_run(data, 0, label="trial1"),
             make_run(data, 1, ("stage2.block2",), label="trial2")]
    stepped = []
    twins[1].model.register_forward_pre_hook(lambda *args: stepped.append(1))  # its own net never trains
    trained(twins, 3)
    assert twins[0].report.shared_with == ["trial1"] and twins[1].report.shared_with == ["trial0"]
    assert twins[2].report.shared_with == []
    for twin in twins[:2]:
        assert max(differences(alone, twin)) <= 1e-12 and twin.history[-1]["test_acc"] == alone.history[-1]["test_acc"]
    assert twins[1].images == twins[0].images == 2 * 70  # counted as trained (energy is split by images)
    assert stepped == []


def test_an_error_in_the_fused_step_fails_its_members_not_the_pack(data, monkeypatch):
    runs = [make_run(data, seed, dtype=torch.float32) for seed in range(2)]
    other = make_run(data, 2, dtype=torch.float32, fuse=False)  # trains alone beside the group

    def broken(self, xs, y):
        raise RuntimeError("CUDA out of memory (pretend)")

    monkeypatch.setattr(FusedGroup, "step", broken)
    finished = trained([*runs, other], 3)
    assert [type(finished[n].error) for n in range(2)] == [RuntimeError, RuntimeError]
    assert "out of memory" in str(finished[0].error) and finished[2].error is None and len(finished[2].result) == 2


def test_a_filter_ticket_keeps_its_own_step_beside_a_fused_group(cifar_fixture, tmp_path):
    from layerlth import TrialConfig
    from layerlth.tickets.trial import trial_work

    common = dict(dataset=cifar_fixture, train_subset=70, recipe="paper", epochs=1, batch_size=32, score_batches=1,
                  score_batch_size=32, emissions=False, device="cpu", arch="resnet20", fuse=True,
                  dense_dir=str(tmp_path))
    configs = [TrialConfig(**common, kind="dense", seed=0), TrialConfig(**common, kind="dense", seed=1),
               TrialConfig(**common, kind="filter", criterion="snip", p=2)]
    finished = {f.key: f for f in Pack(3).run(Works([(n, trial_work(c)) for n, c in enumerate(configs)]))}
    rows = [finished[n].result for n in range(3)]
    assert [r["training_path"] for r in rows] == ["fused_eager", "fused_eager", "eager"]
    assert rows[0]["fused_group_size"] == rows[1]["fused_group_size"] == 2 and "fused_group_size" not in rows[2]
