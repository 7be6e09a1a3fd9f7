"""Energy and CO2 of a piece of work, through codecarbon's offline tracker, with how it was had.

codecarbon measures CPU energy only through RAPL (or Power Gadget / powermetrics); without them it
estimates from CPU load and the CPU's TDP. RAM power is always a model. GPU energy comes from NVML,
a measurement. The result names the source of each part next to the numbers.
"""

import logging

_MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "apple_powermetrics", "windows_emi"}


def _method(tracker):
    parts = []
    for hardware in tracker._hardware:
        kind = type(hardware).__name__
        if kind == "CPU":
            mode = getattr(hardware, "_mode", "unknown")
            parts.append(f"cpu:{mode}({'measured' if mode in _MEASURED_CPU_MODES else 'estimated'})")
        elif kind == "GPU":
            parts.append("gpu:nvml(measured)")
        elif kind == "RAM":
            parts.append("ram:model(estimated)")
        else:
            parts.append(f"{kind.lower()}:measured")
    return ";".join(parts)


class EmissionsMeter:
    """Context manager; after exit, `.result` holds energy_kwh, co2_kg and emissions_method;
    `so_far()` reads the same while it runs (what a checkpoint keeps of an attempt's energy)."""

    def __init__(self, country="USA", enabled=True, gpu_share=1.0):
        self.country, self.enabled, self.gpu_share, self.result = country, enabled, gpu_share, {}

    def __enter__(self):
        if self.enabled:
            from codecarbon import OfflineEmissionsTracker  # here: a trial without emissions needs no codecarbon

            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            self.tracker = OfflineEmissionsTracker(
                country_iso_code=self.country, save_to_file=False, log_level="error",
                allow_multiple_runs=True, measure_power_secs=5,
            )
            self.tracker.start()
        return self

    def so_far(self):
        """The energy and CO2 measured since the start, the tracker still running; None when off."""
        if not self.enabled:
            return None
        self.tracker._measure_power_and_energy_if_stale()  # codecarbon's own reading, as flush() does
        data = self.tracker._prepare_emissions_data()
        return self._parts(data, data.emissions)

    def __exit__(self, *exc):
        if not self.enabled:
            self.result = {"energy_kwh": None, "co2_kg": None, "gpu_share": self.gpu_share, "emissions_method": "disabled"}
            return False
        co2 = self.tracker.stop()
        self.result = self._parts(self.tracker.final_emissions_data, co2)
        return False

    def _parts(self, data, co2):
        # NVML reads the whole GPU: a trial sharing it is charged its share of the GPU energy
        gpu = data.gpu_energy * self.gpu_share
        energy = data.cpu_energy + data.ram_energy + gpu
        intensity = co2 / data.energy_consumed if data.energy_consumed and co2 else 0.0
        return {
            "energy_kwh": energy, "co2_kg": energy * intensity, "country": self.country,
            "cpu_energy_kwh": data.cpu_energy, "gpu_energy_kwh": gpu, "ram_energy_kwh": data.ram_energy,
            "gpu_share": self.gpu_share, "emissions_method": _method(self.tracker),
        }


ADDED = ("energy_kwh", "co2_kg", "cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh")


def over_attempts(earlier, last):
    """The energy of a trial run in several attempts: each earlier attempt as measured up to its
    last checkpoint (what it did after that is redone, and its energy lost with the kill), plus the
    last attempt in full. `earlier` and `last` are `EmissionsMeter` results."""
    if not earlier or last.get("energy_kwh") is None:
        return {**last, "energy_attempts": [*earlier, last]}
    attempts = [*earlier, last]
    totals = {name: sum(a.get(name) or 0.0 for a in attempts) for name in ADDED}
    return {**last, **totals, "energy_attempts": attempts}
