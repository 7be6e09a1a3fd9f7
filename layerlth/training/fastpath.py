"""Which fast path a device gets: bf16 autocast, the channels_last memory format and torch.compile,
each only where the hardware makes it pay.

CUDA: bf16 where the GPU computes it natively (Ampere and later); channels_last always.
CPU (oneDNN): bf16 autocast only with AMX-BF16 matrix units. Without them oneDNN either emulates
bf16 in fp32 (AVX-512 alone) or runs AVX512-BF16 dot products whose gain the bf16<->fp32 conversions
around every batch norm eat: training these ResNets measured slower than fp32 on such a CPU
(benchmarks/README.md). channels_last needs AVX-512, where oneDNN's NHWC kernels are faster than
NCHW even in fp32. Capabilities come from `torch.cpu.get_capabilities()` (cpuinfo).

CUDA graphs (`graph`, `steps.GraphedStep`): by default ("auto") on CUDA, where one H200 measured
the whole training step as one graph 4.5x (resnet20) and 3.6x (resnet56) the images/s of the eager
step at batch 128 (these nets are bound by kernel launches there); impossible on a CPU.

torch.compile (inductor) of the training network: off by default ("auto") everywhere. On the H200
it gained nothing for resnet20 (10 790 vs 10 611 img/s eager) and lost for resnet56 (4 338 vs 5 032)
after 30-80 s of compiling; on the 2-core AVX-512 CPU of benchmarks/README.md it trained ~1.1-1.25x
faster but cost 25-50 s of compilation per network, which a short trial does not earn back.
`compile=True` turns it on (the graphed step is then off: the two do not compose here, a compiled
module captures its own graphs only in torch.compile's "reduce-overhead" mode). The mode per device:
COMPILE_MODES.

cuDNN's autotuner (`torch.backends.cudnn.benchmark`): on for every CUDA trial, unless the process
asked cuDNN for deterministic kernels (`torch.backends.cudnn.deterministic`: the autotuner would
then pick by timing among them, and two runs could round apart). It times the candidate kernels of
each new shape once, in a warm-up step, never inside a capture (`graphs.Graphs` warms each shape
up eagerly first). Grouped convolutions (fused packs) and the 3-channel stem are where its choice
matters most; the GPU suite's fusion stage measures both settings. A CUDA row records it.
"""

from dataclasses import dataclass

import torch

from layerlth.foundations.config import COMPILE_CHOICES, GRAPH_CHOICES  # noqa: F401 - the allowed values

# torch.compile's mode per device type, for `compile=True`. CPU: "default", the mode
# benchmarks/throughput.py --compile measured (~1.1-1.25x, the table in benchmarks/README.md). CUDA:
# "default", the mode measured on the H200 (no faster than eager there); layerlth's own graphed step
# is CUDA's fast path instead of torch.compile's "reduce-overhead".
COMPILE_MODES = {"cpu": "default", "cuda": "default"}


def check_compile(value):
    """`compile` is "auto" (off: CUDA graphs are the CUDA fast path), true or false."""
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError(f"compile={value!r}: expected one of 'auto', true, false")


def check_graph(value, compile="auto"):
    """`graph` is "auto" (on for CUDA unless compile is forced on), true or false; true with
    compile true is refused (they do not compose here)."""
    if not (isinstance(value, bool) or value == "auto"):
        raise ValueError(f"graph={value!r}: expected one of 'auto', true, false")
    if value is True and compile is True:
        raise ValueError("graph=true and compile=true: a graphed step runs the plain module; choose one")
    return value


@dataclass(frozen=True)
class FastPath:
    amp: bool  # bf16 autocast for forward passes
    channels_last: bool
    compile_mode: str | None = None  # torch.compile's mode for the training network; None: eager
    graphed: bool = False  # each training step a CUDA graph replay (`steps.GraphedStep`)
    cudnn_benchmark: bool | None = None  # cuDNN's autotuner on (CUDA only; None elsewhere)

    @property
    def precision(self):
        return "bf16-autocast" if self.amp else "fp32"

    @property
    def memory_format(self):
        return "channels_last" if self.channels_last else "contiguous"

    @property
    def compiled(self):
        return self.compile_mode is not None

    @property
    def path(self):
        """Which engine trained: cuda_graph, compiled or eager."""
        return "cuda_graph" if self.graphed else "compiled" if self.compiled else "eager"

    def record(self):
        """What a result row says about how the trial was computed."""
        row = {"precision": self.precision, "memory_format": self.memory_format, "compiled": self.compiled,
               "compile_mode": self.compile_mode, "graphed": self.graphed, "training_path": self.path}
        return row if self.cudnn_benchmark is None else row | {"cudnn_benchmark": self.cudnn_benchmark}

    def apply(self):
        """The process-wide switches this path sets before training: cuDNN's autotuner on CUDA."""
        if self.cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = self.cudnn_benchmark


def _onednn():
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def cpu_bf16_pays():
    """AMX-BF16 tiles: bf16 matrix units, the only CPU bf16 that trains these nets faster than fp32."""
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("amx_bf16") and capabilities.get("amx_tile")) and _onednn()


def cpu_channels_last_pays():
    return bool(torch.cpu.get_capabilities().get("avx512_f")) and _onednn()


def compile_mode(device, compile="auto"):
    """torch.compile's mode for training on `device`, or None (eager): "auto" compiles nowhere
    (measured no faster on CUDA, where graphs are the fast path, nor on short CPU trials), True on
    any device with a measured mode (CPU, CUDA), False nowhere."""
    device = torch.device(device)
    wanted = check_compile(compile) is True
    return COMPILE_MODES.get(device.type) if wanted else None


def graphed(device, graph="auto", compile="auto"):
    """Whether training steps are CUDA graph replays: "auto" on CUDA unless compile is forced on;
    True needs a CUDA device."""
    device = torch.device(device)
    if check_graph(graph, compile) is True and device.type != "cuda":
        raise ValueError(f"graph=true needs a CUDA device, but this trial trains on {device}")
    return device.type == "cuda" and (graph is True or (graph == "auto" and compile is not True))


def fused(device, fuse="auto"):
    """Whether a pack may fuse this trial with others: True or False as asked; "auto" only on a
    device kind whose entry in the measurements (`sweep/measured_throughput.json`) says the GPU
    suite's fusion stage measured fused packs faster (no kind says so yet: off)."""
    if not (isinstance(fuse, bool) or fuse == "auto"):
        raise ValueError(f"fuse={fuse!r}: expected one of 'auto', true, false")
    if fuse != "auto":
        return fuse
    from layerlth.foundations.measured import device_kind, measured_throughput

    entry = measured_throughput().get(device_kind(device), {})
    return entry.get("fusion", {}).get("faster") is True


def choose(device, amp=True, channels_last=True, compile="auto", graph="auto"):
    """The fast path for `device`: each part used when asked for and where it pays."""
    device = torch.device(device)
    mode = compile_mode(device, compile)
    if device.type == "cuda":
        return FastPath(amp=amp and torch.cuda.is_bf16_supported(including_emulation=False),
                        channels_last=channels_last, compile_mode=mode, graphed=graphed(device, graph, compile),
                        cudnn_benchmark=not torch.backends.cudnn.deterministic)
    if device.type == "cpu":
        return FastPath(amp=amp and cpu_bf16_pays(), channels_last=channels_last and cpu_channels_last_pays(),
                        compile_mode=mode)
    return FastPath(amp=False, channels_last=False, compile_mode=mode)
