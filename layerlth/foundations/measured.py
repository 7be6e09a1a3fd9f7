"""What was measured on each kind of device (`sweep/measured_throughput.json`, written by the
benchmarks and the GPU suite), and the name of the kind this process runs on. The sweep's cost
estimate reads the throughput and packing; the engine reads whether fused packs paid there."""

import json
import os
import platform
from pathlib import Path

import torch

MEASURED = Path(__file__).resolve().parents[1] / "sweep" / "measured_throughput.json"


def device_kind(device=None):
    """Names a kind of device the way the measurements file does: the GPU's name, or the CPU's model
    and core count (throughput on a CPU scales with its cores)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{cpu_model()} x{os.cpu_count()}"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measured_throughput(path=MEASURED):
    """{device kind: {"images_per_second": {arch: img/s}, "source": ..., "date": ..., ...}}."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}
