"""The engine's stream and graph rules on a CUDA GPU (marker `cuda`, skipped without one; run by the
prepared GPU check, benchmarks/gpu_suite.py, before anything else).

Each race of a side stream shows as a difference from the same run synchronised after every step:
the side stream is made to lag (`torch.cuda._sleep` before every replay), so the caller's stream
runs steps ahead; a batch whose memory was handed to the next batch, or an lr written for the next
step, would then reach a queued replay. With deterministic cuDNN both runs launch the same kernels
on the same inputs, so their weights must be bitwise equal."""

from dataclasses import replace

import pytest
import torch
from test_engine import dropping

from layerlth import build_for_images
from layerlth.data import load_dataset
from layerlth.foundations.recipes import get_recipe
from layerlth.models.surgery import remove_blocks
from layerlth.training.boundary import RunTerms
from layerlth.training.loop import Run
from layerlth.training.packs.pack import Pack, Works

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
]
CUDA = torch.device("cuda")
LAG_CYCLES = 20_000_000  # ~10 ms of one SM spinning before each replay: the caller runs many steps ahead
PAPER = get_recipe("paper").scaled(epochs=2, batch_size=64)
CYCLIC = replace(get_recipe("imagenet_fast").scaled(epochs=2, batch_size=64), train_sizes=None)  # lr set per step


@pytest.fixture(scope="module")
def cifar(cifar_subset):
    return load_dataset(cifar_subset).subset(train=512 + 40, test=256).to(CUDA)  # 40: a partial last batch


@pytest.fixture
def deterministic():
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        yield


def make(data, seed, removed=(), recipe=PAPER, graph=True, fuse=False, dtype=torch.float32, amp=False,
         channels_last=True):
    torch.manual_seed(seed)
    model = build_for_images("resnet20", 10, (3, 32, 32))
    model = (remove_blocks(model, list(removed)) if removed else model).to(CUDA, dtype)
    return Run(model, data, recipe, seed=seed, graph=graph, amp=amp, channels_last=channels_last,
               terms=RunTerms(label=f"seed{seed}", fuse=fuse, fuse_tag="resnet20"))


def trained(runs, slots):
    def work(run):
        yield run
        return run.history
    finished = {f.key: f for f in Pack(slots).run(Works([(n, work(r)) for n, r in enumerate(runs)]))}
    errors = [f.error for f in finished.values() if f.error is not None]
    if errors:
        raise errors[0]
    return runs


def weights(run):
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def largest_difference(a, b):
    states = [r.model.state_dict() for r in (a, b)]
    return max((states[0][k].double() - states[1][k].double()).abs().max().item() for k in states[0])


def in_float64(data):
    data = data.subset()
    data.__dict__["channel_stats"] = tuple(t.double() for t in data.channel_stats)
    return data


@pytest.fixture
def replays(monkeypatch):
    """`replays("lag")`: every replay after a lag on its stream; `replays("sync")`: the device
    synchronised after every replay (nothing can race)."""
    original = torch.cuda.CUDAGraph.replay
    counted = []

    def lagged(self):
        torch.cuda._sleep(LAG_CYCLES)
        original(self)
        counted.append(1)

    def synced(self):
        torch.cuda.synchronize()
        original(self)
        torch.cuda.synchronize()
        counted.append(1)

    def use(mode):
        monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", {"lag": lagged, "sync": synced}[mode])
        return counted
    return use


def lag_against_sync(replays, build, slots):
    """The same runs trained with lagging replays and with synchronised ones: their weights, and
    how many replays each made (the check means something only if replays happened)."""
    results = {}
    for mode in ("lag", "sync"):
        counted = replays(mode)
        counted.clear()
        runs = trained(build(), slots)
        torch.cuda.synchronize()
        results[mode] = runs, len(counted)
    return results


@pytest.mark.parametrize("recipe", [PAPER, CYCLIC], ids=["paper", "cyclic_per_step_lr"])
def test_a_lagging_side_stream_changes_nothing_in_a_graphed_run(cifar, deterministic, replays, recipe):
    results = lag_against_sync(replays, lambda: [make(cifar, 0, recipe=recipe)], 1)
    (lagged, n_lag), (synced, n_sync) = results["lag"], results["sync"]
    assert n_lag == n_sync > 10 and lagged[0].graphed
    assert all(torch.equal(a, b) for a, b in zip(weights(lagged[0]).values(), weights(synced[0]).values()))
    assert lagged[0].history[-1]["train_loss"] == synced[0].history[-1]["train_loss"]


@pytest.mark.parametrize("recipe", [PAPER, CYCLIC], ids=["paper", "cyclic_per_step_lr"])
def test_a_lagging_side_stream_changes_nothing_in_a_graphed_fused_pack(cifar, deterministic, replays, recipe):
    epochs = replace(recipe, epochs=3)  # a third epoch: the evaluation graphs (warmed up in epoch 1) replay too
    members = [(0, ()), (1, ("stage1.block2",)), (2, ("stage3.block1", "stage3.block3"))]
    results = lag_against_sync(replays, lambda: [make(cifar, s, r, recipe=epochs, fuse=True) for s, r in members], 3)
    (lagged, n_lag), (synced, n_sync) = results["lag"], results["sync"]
    assert n_lag == n_sync > 10
    for a, b in zip(lagged, synced):
        assert a.report.fused_group_size == 3 and a.report.fused_graphed
        assert all(torch.equal(x, y) for x, y in zip(weights(a).values(), weights(b).values()))
        assert [h["test_acc"] for h in a.history] == [h["test_acc"] for h in b.history]  # graphed evaluation
        assert [h["test_loss"] for h in a.history] == [h["test_loss"] for h in b.history]


def test_a_graphed_fused_pack_in_float64_computes_what_its_members_compute_eagerly(cifar, deterministic):
    """Fused, graphed, float64 against each member alone with the same lr arithmetic: float64
    learning rates (a solo graphed step's fused SGD reads an fp32 lr tensor, so eager members)."""
    data = in_float64(cifar)
    members = [(0, ()), (1, ("stage1.block2",)), (2, ("stage2.block2", "stage3.block3"))]
    alone = trained([make(data, s, r, graph=False, dtype=torch.float64) for s, r in members], 1)
    fused = trained([make(data, s, r, fuse=True, dtype=torch.float64) for s, r in members], 3)
    for a, f in zip(alone, fused):
        assert f.report.fused_group_size == 3 and f.report.fused_graphed
        assert largest_difference(a, f) <= 1e-10  # cuDNN's float64 kernels: grouped and single round alike
        assert [h["test_acc"] for h in a.history] == [h["test_acc"] for h in f.history]


def test_a_fused_pack_in_bf16_and_channels_last_stays_within_the_solo_layout_spread(cifar):
    """The production path (bf16 autocast, channels_last, graphed) fused against its members alone:
    within 4x how far one member alone moves between contiguous and channels_last (the rounding
    that changing kernels costs, measured here)."""
    seeds = (0, 1, 2)
    alone = trained([make(cifar, s, amp=True) for s in seeds], 1)
    contiguous = trained([make(cifar, s, amp=True, channels_last=False) for s in seeds], 1)
    fused = trained([make(cifar, s, amp=True, fuse=True) for s in seeds], 3)
    spread = max(largest_difference(a, c) for a, c in zip(alone, contiguous))
    assert spread > 0
    for a, f in zip(alone, fused):
        assert f.report.fused_group_size == 3
        assert largest_difference(a, f) <= 4 * spread
        assert abs(a.history[-1]["test_acc"] - f.history[-1]["test_acc"]) <= 0.05


def test_fused_members_whose_batches_differ_in_size_compute_what_they_compute_alone(cifar, deterministic,
                                                                                     monkeypatch):
    from layerlth.training.packs.fusion import Fusion

    monkeypatch.setattr(Fusion, "_plans", staticmethod(lambda members: None))  # each member takes its own batches
    data = in_float64(cifar)

    def runs(graph, fuse):
        built = [make(data, s, graph=graph, fuse=fuse, dtype=torch.float64) for s in (0, 1)]
        dropping(built[0], 3, 50)  # only the first's batches lose images
        return built

    alone, fused = trained(runs(False, False), 1), trained(runs(True, True), 2)
    for a, f in zip(alone, fused):
        assert f.report.fused_group_size == 2 and f.report.fused_graphed
        assert largest_difference(a, f) <= 1e-9  # the steps apart: a graphed member's fp32 lr tensor
        assert a.history[-1]["train_loss"] == pytest.approx(f.history[-1]["train_loss"], abs=1e-9)
    assert fused[0].seen == alone[0].seen == 552 - 14  # 14 images dropped in its epoch


def test_a_capture_that_fails_trains_on_eagerly_with_the_same_results_and_no_graph_pool(cifar, deterministic):
    """Against the same run never captured (its warm-up never ends): the failed capture left no
    trace in the weights, and no private memory pool behind."""
    import gc

    class Syncing(torch.nn.Module):  # .item() waits for the device: a CUDA graph cannot hold it
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            if float(x.abs().sum().item()) < 0:
                x = -x
            return self.net(x)

    results = []
    for never in (False, True):
        torch.manual_seed(0)
        model = Syncing(build_for_images("resnet20", 10, (3, 32, 32))).to(CUDA)
        run = Run(model, cifar, PAPER, graph=True, channels_last=True)
        if never:
            run.stepper.graphs.warmup = 10**9
        trained([run], 1)
        results.append(run)
    failed, eager = results
    assert not failed.graphed and "capture failed" in failed.stepper.fallback and eager.stepper.fallback is None
    assert all(torch.equal(a, b) for a, b in zip(weights(failed).values(), weights(eager).values()))
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    pools = {tuple(s.get("segment_pool_id", (0, 0))) for s in torch.cuda.memory._snapshot()["segments"]}
    assert pools <= {(0, 0)}, pools  # no private graph pool survives the failed capture
