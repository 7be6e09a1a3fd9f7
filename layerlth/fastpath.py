"""Which fast path a device gets: bf16 autocast and the channels_last memory format, each only where
the hardware makes it pay.

CUDA: bf16 where the GPU computes it natively (Ampere and later); channels_last always.
CPU (oneDNN): bf16 autocast only with AMX-BF16 matrix units. Without them oneDNN either emulates
bf16 in fp32 (AVX-512 alone) or runs AVX512-BF16 dot products whose gain the bf16<->fp32 conversions
around every batch norm eat: training these ResNets measured slower than fp32 on such a CPU
(benchmarks/README.md). channels_last needs AVX-512, where oneDNN's NHWC kernels are faster than
NCHW even in fp32. Capabilities come from `torch.cpu.get_capabilities()` (cpuinfo).
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FastPath:
    amp: bool  # bf16 autocast for forward passes
    channels_last: bool

    @property
    def precision(self):
        return "bf16-autocast" if self.amp else "fp32"

    @property
    def memory_format(self):
        return "channels_last" if self.channels_last else "contiguous"

    def record(self):
        """What a result row says about how the trial was computed."""
        return {"precision": self.precision, "memory_format": self.memory_format}


def _onednn():
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def cpu_bf16_pays():
    """AMX-BF16 tiles: bf16 matrix units, the only CPU bf16 that trains these nets faster than fp32."""
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("amx_bf16") and capabilities.get("amx_tile")) and _onednn()


def cpu_channels_last_pays():
    return bool(torch.cpu.get_capabilities().get("avx512_f")) and _onednn()


def choose(device, amp=True, channels_last=True):
    """The fast path for `device`: each part used when asked for and where it pays."""
    device = torch.device(device)
    if device.type == "cuda":
        return FastPath(amp=amp and torch.cuda.is_bf16_supported(including_emulation=False),
                        channels_last=channels_last)
    if device.type == "cpu":
        return FastPath(amp=amp and cpu_bf16_pays(), channels_last=channels_last and cpu_channels_last_pays())
    return FastPath(amp=False, channels_last=False)
