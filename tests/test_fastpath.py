import pytest
import torch

import layerlth.training.fastpath as fastpath
from layerlth import build_model, run_trial
from layerlth.data import synthetic
from layerlth.foundations.recipes import get_recipe
from layerlth.training.loop import train

TINY = dict(arch="resnet20", dataset="synthetic", recipe="he2016", epochs=1, batch_size=64, train_subset=128,
            emissions=False)
X86_AVX2 = {"architecture": "x86_64", "avx2": True}
X86_AVX512 = {**X86_AVX2, "avx512_f": True, "avx512_bw": True, "avx512_vl": True}


@pytest.mark.parametrize("capabilities,expected", [
    (X86_AVX2, (False, False)),
    (X86_AVX512, (False, True)),  # oneDNN would emulate bf16
    ({**X86_AVX512, "avx512_bf16": True}, (False, True)),  # native dot products, but slower training than fp32
    ({**X86_AVX512, "avx512_bf16": True, "amx_tile": True, "amx_bf16": True}, (True, True)),
    ({"architecture": "aarch64", "neon": True, "bf16": True}, (False, False)),
])
def test_cpu_fast_path_only_where_it_pays(monkeypatch, capabilities, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    amp, channels_last = expected
    assert fastpath.choose("cpu") == fastpath.FastPath(amp=amp, channels_last=channels_last)


def test_no_fast_path_without_onednn(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {**X86_AVX512, "amx_tile": True, "amx_bf16": True})
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert fastpath.choose("cpu") == fastpath.FastPath(amp=False, channels_last=False)


@pytest.mark.parametrize("pays", [True, False])
def test_fp32_when_asked_whatever_the_cpu(monkeypatch, pays):
    monkeypatch.setattr(fastpath, "cpu_bf16_pays", lambda: pays)
    monkeypatch.setattr(fastpath, "cpu_channels_last_pays", lambda: pays)
    path = fastpath.choose("cpu", amp=False, channels_last=False)
    assert path.record() == {"precision": "fp32", "memory_format": "contiguous", "compiled": False, "compile_mode": None,
                             "graphed": False, "training_path": "eager"}
    assert fastpath.choose("cpu", amp=True, channels_last=False) == fastpath.FastPath(amp=pays, channels_last=False)


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


@pytest.mark.parametrize("pays,asked,expected", [
    (True, True, ("bf16-autocast", "channels_last")),
    (False, True, ("fp32", "contiguous")),
    (True, False, ("fp32", "contiguous")),
])
def test_the_row_records_precision_and_memory_format(monkeypatch, pays, asked, expected):
    monkeypatch.setattr(fastpath, "cpu_bf16_pays", lambda: pays)
    monkeypatch.setattr(fastpath, "cpu_channels_last_pays", lambda: pays)
    row = run_trial(dict(TINY, device="cpu", amp=asked, channels_last=asked))
    assert (row["precision"], row["memory_format"]) == expected


def test_graph_option_values_device_and_hash():
    """`graph`: auto/true/false; true needs CUDA and is refused with compile=true, before any work;
    like compile, it changes neither the trial hash nor the dense key."""
    from layerlth import TrialConfig, run_trial
    from layerlth.training.fastpath import check_graph, graphed

    assert graphed("cpu") is False and graphed("cuda") is True and graphed("cuda", "auto", True) is False
    assert graphed("cuda", False) is False
    with pytest.raises(ValueError, match="graph=true needs a CUDA device"):
        graphed("cpu", True)
    with pytest.raises(ValueError, match=r"graph='yes': expected one of 'auto', true, false"):
        check_graph("yes")
    with pytest.raises(ValueError, match="graph=true and compile=true"):
        run_trial(TrialConfig(dataset="digits", graph=True, compile=True))
    with pytest.raises(ValueError, match="graph=true needs a CUDA device, but device='cpu'"):
        run_trial(TrialConfig(dataset="digits", graph=True, device="cpu"))
    pinned = dict(kind="after_training", arch="resnet32", dataset="cifar10", criterion="kl", p=1, rewind=25)
    for value in ("auto", True, False):
        config = TrialConfig(**pinned, graph=value)
        assert (config.hash(), config.dense_key()) == ("7df2be83b7d9", "1ed809d3c02b")
