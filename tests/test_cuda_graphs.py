"""The graphed training step and packs on a CUDA GPU (marker `cuda`, skipped without one; run by
benchmarks/gpu_suite.py): a graphed run learns what an eager one learns, a graphed pack's members
compute what each computes alone, a graphed trial resumes, and a pack member's row has its own peak
memory. Tolerances: the graphed step runs SGD's fused kernel and autocast without its cast cache,
the eager one the foreach kernel, so their float rounding differs (never bitwise); members of a
pack and the same runs alone run the same kernels on the same inputs (deterministic cuDNN here), so
those are held to 1e-6."""

import io

import pytest
import torch

from layerlth import run_trial
from layerlth.data import load_dataset
from layerlth.foundations.recipes import get_recipe
from layerlth.tickets.trial import trial_work
from layerlth.training.checkpoints import checkpoint_state, load_state
from layerlth.training.fastpath import choose
from layerlth.training.loop import Run, train
from layerlth.training.packs.pack import Pack, Works

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
]
CUDA = torch.device("cuda")
RECIPE = get_recipe("he2016").scaled(2, 64, None)  # 2 epochs of 1024 images, 16 steps each (3 eager + 13 replays)


@pytest.fixture(scope="module")
def cifar(cifar_subset):
    return load_dataset(cifar_subset).subset(train=1024 + 40, test=512).to(CUDA)  # 40: a partial last batch


@pytest.fixture
def deterministic():
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        yield


def net(seed):
    from layerlth import build_for_images

    torch.manual_seed(seed)
    return build_for_images("resnet20", 10, (3, 32, 32)).to(CUDA)


def test_a_graphed_run_learns_what_an_eager_run_learns(cifar, deterministic):
    fast = choose(CUDA)
    eager = train(net(0), cifar, RECIPE, amp=fast.amp, channels_last=True, graph=False)
    graphed = train(net(0), cifar, RECIPE, amp=fast.amp, channels_last=True, graph=True)
    for e, g in zip(eager, graphed):
        assert g["train_loss"] == pytest.approx(e["train_loss"], rel=2e-2), (e, g)
        assert abs(g["test_acc"] - e["test_acc"]) <= 0.03, (e, g)
    assert graphed[-1]["train_loss"] < graphed[0]["train_loss"] + 0.05  # it trains


def test_a_graphed_pack_computes_what_each_member_computes_alone(cifar, deterministic):
    fast = choose(CUDA)

    def runs():
        return {seed: Run(net(seed), cifar, RECIPE, seed=seed, amp=fast.amp, channels_last=True, graph=True)
                for seed in (0, 1, 2)}

    alone = {}
    for seed, run in runs().items():
        run.begin()
        while run.step():
            pass
        alone[seed] = run.history

    def work(run):
        yield run
        return run.history

    together = {f.key: f.result for f in Pack(3).run(Works((seed, work(run)) for seed, run in runs().items()))}
    assert all(run.graphed for run in runs().values())
    for seed, history in alone.items():
        for a, b in zip(history, together[seed]):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6)
            assert b["test_acc"] == pytest.approx(a["test_acc"], abs=1e-6)


def test_a_graphed_trial_resumes_from_its_checkpoint(cifar_subset, tmp_path):
    config = dict(kind="at_init", criterion="grasp", p=1, arch="resnet20", dataset=cifar_subset, recipe="he2016",
                  epochs=2, batch_size=64, train_subset=512, score_batches=1, emissions=False, device="cuda",
                  dense_dir=str(tmp_path / "dense"))
    saved = {}

    class Killed(Exception):
        pass

    def checkpoint_then_die(state):
        if state.epoch == 1 and state.metrics:
            from layerlth import TrialConfig

            saved["file"] = io.BytesIO()
            torch.save(checkpoint_state(state, TrialConfig(**config), [0]), saved["file"])
            raise Killed

    with pytest.raises(Killed):
        run_trial(config, callbacks=[checkpoint_then_die])
    saved["file"].seek(0)
    from layerlth import TrialConfig

    resume = load_state("checkpoint", TrialConfig(**config), saved["file"])
    row = run_trial(config, resume=resume)
    assert row["training_path"] == "cuda_graph" and row["graphed"] and row["resumed_from_epoch"] == 1
    assert len(row["history"]) == 2 and row["status"] == "finished"


def test_each_member_of_a_cuda_pack_has_its_own_peak_memory(cifar_subset, tmp_path):
    base = dict(dataset=cifar_subset, recipe="he2016", epochs=1, batch_size=128, train_subset=1024, score_batches=1,
                emissions=False, device="cuda", dense_dir=str(tmp_path / "dense"))
    members = {"resnet20": dict(base, kind="dense", arch="resnet20"),
               "resnet56 p=4": dict(base, kind="at_init", arch="resnet56", criterion="grasp", p=4)}
    rows = {f.key: f.result for f in Pack(2).run(Works((k, trial_work(c)) for k, c in members.items()))}
    for row in rows.values():
        assert row["memory_method"] == "cuda_own_step_peak+own_tensors" and row["training_path"] == "cuda_graph"
        weights = row["params"] * 4
        assert 3 * weights < row["memory_bytes"] < torch.cuda.get_device_properties(0).total_memory
    assert rows["resnet56 p=4"]["memory_bytes"] > rows["resnet20"]["memory_bytes"]  # a deeper net's activations


def test_a_capture_that_fails_leaves_the_run_training_eagerly(cifar):
    class Syncing(torch.nn.Module):  # .item() syncs the device: a CUDA graph cannot hold it
        def __init__(self):
            super().__init__()
            self.net = net(0)

        def forward(self, x):
            if float(x.abs().sum().item()) < 0:
                x = -x
            return self.net(x)

    model = Syncing().to(CUDA)
    run = Run(model, cifar, RECIPE, channels_last=True, graph=True)
    run.begin()
    while run.step():
        pass
    assert not run.graphed and "capture failed" in run.stepper.fallback
    assert len(run.history) == 2 and run.history[-1]["train_loss"] > 0
