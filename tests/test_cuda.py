"""What only a CUDA GPU can check: device-resident batches, bf16 + channels_last training, the peak
memory a trial row reads from CUDA, resuming on CUDA, criteria and CKA on a CUDA model, attacks.

Every test is marked `cuda` and skipped where torch.cuda.is_available() is false, so CI (no GPU)
stays green; `pytest -m cuda` runs them on a GPU, and benchmarks/gpu_suite.py does so first. On a
machine without ../shared/data, point LAYERLTH_TEST_DATA at a copy of cifar10-subset.npz.
"""

import copy
import io
import math

import pytest
import torch

from layerlth import TrialConfig, build_model, run_trial, score_blocks
from layerlth.criteria import CRITERIA
from layerlth.data import Batches, load_dataset
from layerlth.data.batches import random_crop, random_flip
from layerlth.foundations.recipes import get_recipe
from layerlth.measure.similarity import representation_cka
from layerlth.training.checkpoints import checkpoint_state, load_state
from layerlth.training.fastpath import choose
from layerlth.training.loop import autocast, evaluate, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
]
CUDA = torch.device("cuda")
SHORT = get_recipe("he2016").scaled(4, 64, None)  # 4 epochs of 1024 images: well above chance


@pytest.fixture(scope="module")
def cifar(cifar_subset):
    return load_dataset(cifar_subset).subset(train=1024, test=512)


@pytest.fixture
def full_fp32():
    """cuDNN convolutions in true fp32 (PyTorch lets them use TF32 by default) and deterministic, so
    that a CUDA result can be held to the CPU's."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        yield


def bf16_native():
    return torch.cuda.is_bf16_supported(including_emulation=False)


def trial(cifar_subset, tmp_path, **changes):
    return dict(dict(kind="at_init", criterion="grasp", p=1, arch="resnet20", dataset=cifar_subset, recipe="he2016",
                     epochs=1, train_subset=512, score_batches=1, emissions=False, device="cuda",
                     compile=False,  # compiling costs tens of seconds a net; gpu_suite's dense trial compiles
                     dense_dir=str(tmp_path / "dense")), **changes)


def test_crops_and_flips_on_cuda_are_those_on_the_cpu(cifar):
    x = cifar.train_x[:256]
    on_cpu = random_flip(random_crop(x, 4, torch.Generator().manual_seed(1)), torch.Generator().manual_seed(2))
    on_gpu = random_flip(random_crop(x.to(CUDA), 4, torch.Generator().manual_seed(1)), torch.Generator().manual_seed(2))
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)


@pytest.mark.parametrize("train_split", [True, False])
def test_device_resident_batches_are_the_cpu_batches_of_the_seed(cifar, train_split):
    """The batch order and augmentation come from a CPU generator: one seed, the same batches on any
    device (in the layout asked for)."""
    on_cpu = Batches(cifar, 100, train_split, torch.Generator().manual_seed(3))
    on_gpu = Batches(cifar.to(CUDA), 100, train_split, torch.Generator().manual_seed(3),
                     memory_format=torch.channels_last)
    pairs = list(zip(on_cpu, on_gpu, strict=True))
    assert len(pairs) == len(on_cpu) > 1
    for (x, y), (gx, gy) in pairs:
        assert gx.device.type == "cuda" and gx.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(gy.cpu(), y)
        torch.testing.assert_close(gx.cpu(), x, rtol=0, atol=1e-5)


def test_bf16_autocast_and_channels_last_train_and_evaluate_on_cuda(cifar):
    if not bf16_native():
        pytest.skip(f"{torch.cuda.get_device_name()} has no native bf16 (pre-Ampere): layerlth trains it in fp32")
    fast = choose(CUDA)
    assert fast.amp and fast.channels_last, "a GPU with native bf16 gets bf16 autocast + channels_last by default"
    data = cifar.to(CUDA)
    torch.manual_seed(0)
    model = build_model("resnet20").to(CUDA)
    history = train(model, data, SHORT, seed=0, amp=True, channels_last=True)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_cuda and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["test_loss"]) for h in history)
    assert history[-1]["test_acc"] > 0.15  # chance is 0.1
    test = Batches(data, 256, train=False, memory_format=torch.channels_last)
    x, _ = next(iter(test))
    with torch.no_grad(), autocast(CUDA, True):
        assert model.eval()(x).dtype == torch.bfloat16
    _, bf16_acc = evaluate(model, test, amp=True)
    _, fp32_acc = evaluate(model, test, amp=False)
    assert bf16_acc == pytest.approx(history[-1]["test_acc"], abs=0.02)
    assert bf16_acc == pytest.approx(fp32_acc, abs=0.05)  # bf16 evaluates the net fp32 sees


def test_a_cuda_trial_row_reads_its_peak_memory_from_cuda(cifar_subset, tmp_path):
    row = run_trial(trial(cifar_subset, tmp_path))
    assert row["status"] == "finished" and row["device"].startswith("cuda")
    assert row["memory_method"] == "cuda_peak_allocated"
    assert 4 * row["params"] < row["memory_bytes"] <= torch.cuda.get_device_properties(0).total_memory
    assert row["memory_estimate_bytes"] > 0 and row["device_name"] == torch.cuda.get_device_name(0)
    assert row["precision"] == ("bf16-autocast" if bf16_native() else "fp32")
    assert row["memory_format"] == "channels_last"


class Killed(Exception):
    """Stands in for a lost worker after the checkpoint of epoch 1."""


def test_a_cuda_trial_resumes_from_its_checkpoint(cifar_subset, tmp_path):
    config = TrialConfig(**trial(cifar_subset, tmp_path, epochs=2))
    saved = {}

    def checkpoint_then_die(state):
        if state.epoch == 1 and state.metrics:
            saved["file"] = io.BytesIO()
            torch.save(checkpoint_state(state, config, [0]), saved["file"])
            raise Killed

    with pytest.raises(Killed):
        run_trial(config, callbacks=[checkpoint_then_die])
    saved["file"].seek(0)
    resume = load_state("checkpoint", config, saved["file"])  # loads to the CPU, as a new worker does
    devices = []
    result = run_trial(config, resume=resume,
                       callbacks=[lambda state: devices.append(next(state.model.parameters()).device.type)])
    assert result["status"] == "finished" and result["resumed_from_epoch"] == 1 and result["epochs_trained"] == 2
    assert result["history"][0] == resume["history"][0] and len(result["history"]) == 2
    assert set(devices) == {"cuda"} and result["memory_method"] == "cuda_peak_allocated"
    assert result["removed"] == resume["context"]["removed"]  # the ticket is not rebuilt


def scoring_batches(cifar):
    batches = Batches(cifar.subset(train=64), 32, True, torch.Generator().manual_seed(0), augment=False)
    return list(batches)


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_criteria_score_a_cuda_model_as_they_score_it_on_the_cpu(criterion, cifar, full_fp32):
    """Gradient criteria (GraSP's Hessian-gradient product too), SynFlow in float64, and the
    criteria of trained nets, CKA and PLS among them (PLS fits scikit-learn on CPU arrays)."""
    torch.manual_seed(0)
    model = build_model("resnet20")
    batches = scoring_batches(cifar)
    on_cpu = score_blocks(model, criterion, batches)
    on_gpu = score_blocks(copy.deepcopy(model).to(CUDA), criterion, [(x.to(CUDA), y.to(CUDA)) for x, y in batches])
    assert on_gpu.keys() == on_cpu.keys() and all(math.isfinite(v) for v in on_gpu.values())
    if criterion == "hrank":  # a matrix rank may flip at its threshold on other hardware; it stays a share
        assert all(0 <= v <= 1 for v in on_gpu.values())
        return
    scale = max(abs(v) for v in on_cpu.values()) or 1.0
    for block, value in on_cpu.items():
        assert on_gpu[block] == pytest.approx(value, abs=1e-2 * scale), block


def test_cka_of_two_cuda_models_is_that_on_the_cpu(cifar, full_fp32):
    torch.manual_seed(0)
    a, b = build_model("resnet20"), build_model("resnet20")
    batches = list(Batches(cifar.subset(test=256), 128, train=False))
    on_cpu = representation_cka(a, b, batches)
    on_gpu = representation_cka(copy.deepcopy(a).to(CUDA), copy.deepcopy(b).to(CUDA),
                                [(x.to(CUDA), y.to(CUDA)) for x, y in batches])
    assert 0 < on_gpu <= 1 and on_gpu == pytest.approx(on_cpu, abs=1e-4)


def test_fgsm_and_pgd_attack_a_cuda_model(cifar):
    pytest.importorskip("torchattacks", reason="torchattacks is not installed here: FGSM and PGD need it")
    from layerlth.measure.robustness.attacks import AttackSettings, adversarial_accuracy

    data = cifar.to(CUDA)
    torch.manual_seed(0)
    model = build_model("resnet20").to(CUDA)
    train(model, data, SHORT, seed=0)
    found = adversarial_accuracy(model.eval(), data, ["fgsm", "pgd"], AttackSettings(images=300))
    assert found["pgd"] <= found["fgsm"] < found["clean"]
    unchanged = adversarial_accuracy(model, data, ["fgsm", "pgd"], AttackSettings(eps=0.0, images=300))
    assert unchanged["fgsm"] == unchanged["pgd"] == unchanged["clean"]
