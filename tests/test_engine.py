"""The engine's boundary and the review's findings that a CPU can check: an object's fields are
written only by its own module; fused members whose batches differ in size; fused members timed as members
alone are; a data-parallel net wrapped after it has its memory format; cuDNN's autotuner."""

import ast
import time
import warnings
from pathlib import Path

import pytest
import torch
from test_fusion import data, differences, in_float64, make_run, trained  # noqa: F401 - data: a fixture

from layerlth.foundations.recipes import get_recipe
from layerlth.models.cifar_resnet import cifar_resnet
from layerlth.training import fastpath
from layerlth.training.boundary import RunTerms
from layerlth.training.loop import Run
from layerlth.training.packs.fused_group import FusedGroup
from layerlth.training.packs.fusion import Fusion

ROOT = Path(__file__).resolve().parents[1]
NEIGHBOURS = ("training", "measure", "tickets", "criteria")  # the engine and the packages beside it


def assigned(tree):
    """(node, target) for every attribute an assignment, augmented or annotated, writes."""
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                if isinstance(t, ast.Attribute):
                    yield node, t


def test_no_module_of_the_engine_or_beside_it_writes_another_modules_objects_fields():
    """A write `x.field = ...` through any name but `self` is allowed only for a field that a class
    of the same file sets on `self` (its own private helpers): a run's, a report's or a fused
    group's fields are written in the files that define them, through their methods elsewhere."""
    writes = []
    for package in NEIGHBOURS:
        for path in (ROOT / "layerlth" / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            own = {t.attr for _, t in assigned(tree) if isinstance(t.value, ast.Name) and t.value.id == "self"}
            for node, t in assigned(tree):
                through_self = isinstance(t.value, ast.Name) and t.value.id == "self"
                global_switch = ast.unparse(t.value).startswith("torch.")  # a process-wide torch setting
                if not through_self and not global_switch and t.attr not in own:
                    writes.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(t)}")
    assert not writes, writes


def dropping(run, step, keep):
    """The run's batch at `step` of every epoch keeps only its first `keep` images (as a streamed,
    GPU-decoded batch loses the images that do not decode)."""
    taken, state = run.take_batch, {"step": 0}

    def take():
        if run.seen == 0:
            state["step"] = 0
        batch = taken()
        if batch is not None and state["step"] == step:
            batch = batch[0][:keep], batch[1][:keep]
        state["step"] += 1
        return batch
    run.take_batch = take


def test_fused_members_whose_batches_differ_in_size_compute_what_each_computes_alone(data, monkeypatch):  # noqa: F811
    monkeypatch.setattr(Fusion, "_plans", staticmethod(lambda members: None))  # each member takes its own batches
    data = in_float64(data)

    def runs():
        built = [make_run(data, 0), make_run(data, 1, ("stage2.block2",)), make_run(data, 2, lr=0.02)]
        dropping(built[1], 1, 20)  # the second's middle batch loses 12 of its 32 images
        return built

    alone, fused = runs(), runs()
    trained(alone, 1)
    apart = []
    original = FusedGroup.step_apart
    monkeypatch.setattr(FusedGroup, "step_apart", lambda self, *args: (apart.append(1), original(self, *args)))
    trained(fused, 3)
    assert len(apart) == 2  # once per epoch: that step went apart, the others fused
    for a, f in zip(alone, fused):
        assert f.report.fused_group_size == 3
        assert max(differences(a, f)) <= 1e-12
        assert [h["train_loss"] for h in a.history] == pytest.approx([h["train_loss"] for h in f.history], abs=1e-12)
        assert [h["test_acc"] for h in a.history] == [h["test_acc"] for h in f.history]
        assert a.seen == f.seen
    assert fused[1].seen == 70 - 12


def test_a_fused_members_epoch_time_leaves_its_evaluation_out_as_a_run_alone_does(data, monkeypatch):  # noqa: F811
    slow = 3.0
    original = FusedGroup._evaluate

    def slow_evaluation(self, test):
        time.sleep(slow)
        return original(self, test)

    monkeypatch.setattr(FusedGroup, "_evaluate", slow_evaluation)
    runs = [make_run(data, seed, dtype=torch.float32, epochs=1) for seed in range(2)]
    started = time.perf_counter()
    trained(runs, 2)
    assert time.perf_counter() - started > slow  # the slow evaluation ran
    for run in runs:
        assert run.report.fused_group_size == 2
        assert run.history[0]["epoch_seconds"] < slow


def test_a_data_parallel_net_is_wrapped_after_it_has_its_memory_format(data, tmp_path, monkeypatch):  # noqa: F811
    """DDP takes its gradient buckets' strides from the parameters when it wraps them: wrapped while
    contiguous, a channels_last net would pay a copy per step ("grad strides do not match")."""
    import torch.distributed as dist

    from layerlth.training.parallel import Parallel

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29571")
    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.FileStore(str(tmp_path / "store"), 1))
    try:
        torch.manual_seed(0)
        model = cifar_resnet(20, 10)  # contiguous, as a trial builds it
        recipe = get_recipe("paper").scaled(epochs=1, batch_size=32)
        wrapped = Run(model, data, recipe, channels_last=True, terms=RunTerms(parallel=Parallel(0, 1)))
        ddp = wrapped.stepper.runner
        assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel)
        convs = [p for p in ddp.module.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wrapped.begin()
            for _ in range(2):
                wrapped.step()
        assert not [w for w in caught if "strides do not match" in str(w.message)]
    finally:
        dist.destroy_process_group()


def test_cudnns_autotuner_is_on_for_cuda_paths_unless_determinism_was_asked(monkeypatch):
    before = torch.backends.cudnn.benchmark
    try:
        fastpath.FastPath(amp=True, channels_last=True, graphed=True, cudnn_benchmark=True).apply()
        assert torch.backends.cudnn.benchmark is True
        assert fastpath.FastPath(False, False, cudnn_benchmark=True).record()["cudnn_benchmark"] is True
        assert "cudnn_benchmark" not in fastpath.FastPath(False, False).record()  # not a CUDA path
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        with torch.backends.cudnn.flags(enabled=True, deterministic=True):
            assert fastpath.choose("cuda").cudnn_benchmark is False
        with torch.backends.cudnn.flags(enabled=True, deterministic=False):
            assert fastpath.choose("cuda").cudnn_benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before
