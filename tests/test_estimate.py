import pytest

from layerlth import TrialConfig, build_model, count_macs
from layerlth.sweep import estimate

KIND = "cpu:Test CPU x2"


def entries():
    base = dict(dataset="digits", recipe="he2016", epochs=2)
    return [("dense", TrialConfig(kind="dense", arch="resnet20", **base)),
            ("ticket", TrialConfig(kind="at_init", arch="resnet32", criterion="grasp", p=2, **base))]


def test_dry_run_hours_come_from_the_measured_throughput(tmp_path):
    path = tmp_path / "measured.json"
    estimate.record_throughput(KIND, {"resnet20": 500.0}, "benchmarks/throughput.py --quick", "bf16-autocast",
                               "channels_last", "2026-01-02", path=path)
    table = estimate.dry_run_table(entries(), tflops=4, path=path)
    # the measured rate is MACs/s of resnet20's training; resnet32 borrows it and is scaled by its own MACs
    rate = 500.0 * count_macs(build_model("resnet20"))
    seconds = sum(macs * images for macs, images in map(estimate.trial_macs_and_images, [c for _, c in entries()]))
    hours = seconds / rate / 3600
    assert f"about {hours:,.1f} hours on {KIND}" in table
    assert "benchmarks/throughput.py --quick on 2026-01-02" in table and "resnet32 at resnet20's MACs/s" in table
    assert "assumed 4 TFLOP/s" in table and "not measured" in table


def test_a_kind_without_measurements_says_so(tmp_path):
    table = estimate.dry_run_table(entries(), tflops=2, kinds=["cuda:NVIDIA H100"], path=tmp_path / "none.json")
    assert "cuda:NVIDIA H100: no measured throughput (measured: [])" in table
    assert "GPU-hours at an assumed 2 TFLOP/s" in table


def test_recording_keeps_other_kinds(tmp_path):
    path = tmp_path / "measured.json"
    for kind, rate in ((KIND, 1.0), ("cuda:GPU", 2.0), (KIND, 3.0)):
        estimate.record_throughput(kind, {"resnet56": rate}, "src", "fp32", "contiguous", "2026-01-02", path=path)
    measured = estimate.measured_throughput(path)
    assert {k: v["images_per_second"]["resnet56"] for k, v in measured.items()} == {KIND: 3.0, "cuda:GPU": 2.0}


def test_shipped_measurements_name_their_source():
    measured = estimate.measured_throughput()
    assert measured, "layerlth/sweep/measured_throughput.json is missing"
    for kind, entry in measured.items():
        assert kind.split(":")[0] in ("cpu", "cuda") and entry["source"].startswith("benchmarks/")
        assert all(rate > 0 for rate in entry["images_per_second"].values())


@pytest.mark.parametrize("arch", ["resnet20", "resnet56"])
def test_trial_cost_is_six_flops_per_mac_and_trained_image_and_two_per_evaluated_one(arch):
    config = TrialConfig(kind="dense", arch=arch, dataset="digits", recipe="he2016", epochs=3)
    macs, flops = estimate.trial_cost(config)
    assert flops == 6 * macs * 1437 * 3 + 2 * macs * 360 * 3


def test_measured_packing_divides_each_trials_hours_by_its_speedup(tmp_path):
    path = tmp_path / "measured.json"
    packing = {"resnet20": {"trials_per_device": 4, "speedup": 2.5, "peak_memory_bytes": 2**30,
                            "measured": {"1": 1.0, "2": 1.8, "4": 2.5, "8": 2.4}}}
    estimate.record_throughput("cuda:GPU", {"resnet20": 500.0, "resnet32": 300.0}, "benchmarks/gpu_suite.py", "fp32",
                               "channels_last", "2026-01-02", path=path, packing=packing)
    entry = estimate.measured_throughput(path)["cuda:GPU"]
    assert entry["packing"] == packing and entry["packing_source"] == "benchmarks/gpu_suite.py"
    hours, packed = estimate.sweep_hours(entries(), "cuda:GPU", path=path)
    # resnet32 has no packing of its own: it packs as resnet20, the measured arch closest in MACs
    assert packed == pytest.approx(hours / 2.5)
    table = estimate.dry_run_table(entries(), tflops=4, path=path)
    assert f"about {hours:,.1f} hours on cuda:GPU" in table
    assert f"about {packed:,.1f} hours on cuda:GPU with trials packed as measured" in table
    assert "resnet20: 4 per device (--trials-per-gpu 4), 2.50x the trials/hour of one; resnet32 as resnet20" in table
    assert estimate.sweep_hours(entries(), "cuda:other", path=path) is None


def test_without_packing_the_hours_are_one_trial_at_a_time(tmp_path):
    path = tmp_path / "measured.json"
    estimate.record_throughput(KIND, {"resnet20": 500.0}, "src", "fp32", "contiguous", "2026-01-02", path=path)
    hours, packed = estimate.sweep_hours(entries(), KIND, path=path)
    assert hours == packed and "packed" not in estimate.dry_run_table(entries(), tflops=4, path=path)
    with pytest.raises(ValueError, match="trials_per_device must be >= 1"):
        estimate.record_throughput(KIND, {"resnet20": 1.0}, "src", "fp32", "contiguous", "2026-01-02", path=path,
                                   packing={"resnet20": {"trials_per_device": 0, "speedup": 1.0}})
