"""Which fast path a device gets: bf16 autocast and the channels_last memory format, only where the
hardware computes bf16 natively.

On a CPU without bf16 instructions oneDNN emulates bf16 with fp32 arithmetic plus conversions, which
is slower than plain fp32; so the CPU fast path needs AVX512-BF16 or AMX-BF16 (x86) or the BF16
extension (Arm), as reported by `torch.cpu.get_capabilities()` (cpuinfo), and oneDNN to use them.
"""

from dataclasses import dataclass

import torch

# cpuinfo names of the instructions that do bf16 dot products in hardware
NATIVE_BF16_CPU_FEATURES = ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16")


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


def cpu_has_native_bf16():
    capabilities = torch.cpu.get_capabilities()
    has_instructions = any(capabilities.get(name, False) for name in NATIVE_BF16_CPU_FEATURES)
    return has_instructions and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def native_bf16(device):
    """Whether `device` computes bf16 in hardware (not emulated)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def choose(device, amp=True, channels_last=True):
    """The fast path for `device`: each part used when asked for and worth it there. On CUDA
    channels_last always pays (tensor-core convolutions); on a CPU only together with native bf16."""
    device = torch.device(device)
    native = native_bf16(device)
    layout_pays = device.type == "cuda" or native
    return FastPath(amp=amp and native, channels_last=channels_last and layout_pays)
