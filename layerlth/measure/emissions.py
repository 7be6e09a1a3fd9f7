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
            from codecarbon import (
                OfflineEmissionsTracker,  # here: a trial without emissions needs no codecarbon
            )

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
        # codecarbon's own reading, as flush() does, taken now: a short epoch is shorter than the
        # interval after which its `_if_stale` variant reads again
        self.tracker._measure_power_and_energy()
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


def _zero(meter_result):
    return {**meter_result, **{name: 0.0 for name in ADDED}}


class _Share:
    def __init__(self, key, macs):
        self.key, self.macs, self.settled, self.parts, self.members = key, macs, 0, None, 1


class EnergySplit:
    """The energy of runs training side by side in one process (a pack; a run alone is a pack of
    one). One codecarbon tracker per (country, gpu_share) reads the whole machine; at each reading
    (`settle`, at every run's epoch end, join and leave) its increase since the last reading is
    split among the runs by the training work each did meanwhile: images x forward MACs per image.
    A run without emissions gets nothing but its work still counts, since it used the machine.
    A run is anything with `images` (training images stepped so far); `join`, `settle` and
    `leave` return {run: its energy so far} for the runs whose share they read, and write nothing
    into the runs: the pack records the readings."""

    def __init__(self):
        self.meters, self.last, self.shares = {}, {}, {}

    def join(self, run, terms):
        """Start sharing with `run`, metered as `terms` say (`training.boundary.EnergyTerms`:
        country, gpu_share, enabled, macs)."""
        readings = self.settle()
        key = (terms.country, terms.gpu_share) if terms.enabled else None
        if key is not None and key not in self.meters:
            self.meters[key] = EmissionsMeter(terms.country, True, terms.gpu_share).__enter__()
            self.last[key] = self.meters[key].so_far()
        share = _Share(key, terms.macs)
        share.parts = _zero(self.last[key]) if key else {"energy_kwh": None, "co2_kg": None,
                                                         "gpu_share": terms.gpu_share, "emissions_method": "disabled"}
        self.shares[run] = share
        for other in self.shares.values():
            other.members = max(other.members, len(self.shares))
        return readings | {other_run: self._result(other) for other_run, other in self.shares.items()}

    def settle(self):
        if not self.shares:
            return {}
        work = {run: run.images * share.macs - share.settled for run, share in self.shares.items()}
        total = sum(work.values())
        for key, meter in self.meters.items():
            now = meter.so_far()
            delta = {name: (now[name] or 0.0) - (self.last[key][name] or 0.0) for name in ADDED}
            self.last[key] = now
            for run, share in self.shares.items():
                if share.key == key:
                    fraction = work[run] / total if total else 1 / len(self.shares)
                    for name in ADDED:
                        share.parts[name] += delta[name] * fraction
        for run, share in self.shares.items():
            share.settled += work[run]
        return {run: self._result(share) for run, share in self.shares.items()}

    def leave(self, run):
        """Stop sharing with `run`; its energy, and a tracker no run needs any more is stopped."""
        readings = self.settle()
        share = self.shares.pop(run)
        if share.key is not None and all(other.key != share.key for other in self.shares.values()):
            self.meters.pop(share.key).__exit__(None, None, None)
            self.last.pop(share.key)
        return readings | {run: self._result(share)}

    @staticmethod
    def _result(share):
        if share.key is None:
            return dict(share.parts)
        split = "alone" if share.members == 1 else f"images x MACs among up to {share.members} runs"
        return {**share.parts, "energy_split": split}

    def close(self):
        for meter in self.meters.values():
            meter.__exit__(None, None, None)
        self.meters.clear()
