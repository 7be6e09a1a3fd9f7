import pytest
import torch

import layerlth.fastpath as fastpath
from layerlth import build_model, run_trial
from layerlth.data import synthetic
from layerlth.recipes import get_recipe
from layerlth.train import train

TINY = dict(arch="resnet20", dataset="synthetic", recipe="he2016", epochs=1, batch_size=64, train_subset=128,
            emissions=False)
X86_AVX512 = {"architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bw": True, "avx512_vl": True}


@pytest.mark.parametrize("extra,native", [({}, False), ({"avx512_bf16": True}, True), ({"amx_bf16": True}, True),
                                          ({"avx512_bf16": False, "amx_bf16": False}, False)])
def test_cpu_bf16_counts_only_where_the_instructions_exist(monkeypatch, extra, native):
    # AVX-512 alone lets oneDNN emulate bf16, which is slower than fp32: no fast path there
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {**X86_AVX512, **extra})
    assert fastpath.native_bf16("cpu") is native
    assert fastpath.choose("cpu") == fastpath.FastPath(amp=native, channels_last=native)


def test_fast_path_needs_onednn(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {**X86_AVX512, "avx512_bf16": True})
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert not fastpath.native_bf16("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_fp32_when_asked_whatever_the_cpu(monkeypatch, native):
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: native)
    path = fastpath.choose("cpu", amp=False, channels_last=False)
    assert path.record() == {"precision": "fp32", "memory_format": "contiguous"}
    assert fastpath.choose("cpu", amp=True, channels_last=False).amp is native


class Spy(torch.nn.Module):
    """Records, for each forward pass in training, whether autocast was on and the input's layout."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        if self.training:
            self.seen.append((torch.is_autocast_enabled("cpu"), x.is_contiguous(memory_format=torch.channels_last)))
        return self.model(x)


@pytest.mark.parametrize("fast", [True, False])
def test_training_runs_in_the_precision_and_layout_asked(fast):
    data, recipe = synthetic(train=64, test=16, size=(3, 16, 16)), get_recipe("he2016").scaled(epochs=1, batch_size=32)
    spy = Spy(build_model("resnet20"))
    history = train(spy, data, recipe, amp=fast, channels_last=fast)
    assert spy.seen == [(fast, fast)] * 2
    assert all(p.is_contiguous(memory_format=torch.channels_last) == fast
               for p in spy.parameters() if p.ndim == 4 and p.shape[-1] > 1)
    assert 0 <= history[-1]["test_acc"] <= 1 and history[-1]["test_loss"] > 0  # float loss from bf16 logits


@pytest.mark.parametrize("native,asked,expected", [
    (True, True, ("bf16-autocast", "channels_last")),
    (False, True, ("fp32", "contiguous")),
    (True, False, ("fp32", "contiguous")),
])
def test_the_row_records_precision_and_memory_format(monkeypatch, native, asked, expected):
    monkeypatch.setattr(fastpath, "cpu_has_native_bf16", lambda: native)
    row = run_trial(dict(TINY, device="cpu", amp=asked, channels_last=asked))
    assert (row["precision"], row["memory_format"]) == expected
