"""Packs on a CPU: k trials stepped in turn by one process compute exactly what each computes alone;
a failing member leaves the others finishing; a pack cut mid-epoch resumes every member from its
own last checkpoint. Real CIFAR-10 images (the shipped subset), two short epochs."""

import copy

import pytest
import torch

from layerlth import TrialConfig, run_trial
from layerlth.measure.emissions import EnergySplit
from layerlth.sweep.store import SweepStore
from layerlth.sweep.tune.packs import MemberReporter
from layerlth.sweep.tune.trainable import resume_state
from layerlth.tickets.trial import trial_work
from layerlth.training.boundary import EnergyTerms, RunReport, RunTerms
from layerlth.training.loop import Run
from layerlth.training.packs.pack import Metering, Pack, Works

MEMBERS = {
    "dense resnet20": dict(kind="dense", arch="resnet20"),
    "grasp p=2 resnet32": dict(kind="at_init", arch="resnet32", criterion="grasp", p=2),
    "filter snip p=1 resnet20": dict(kind="filter", arch="resnet20", criterion="snip", p=1, seed=1),
}
STEPS_PER_EPOCH = 256 // 64


def configs(subset, dense_dir):
    common = dict(dataset=subset, train_subset=256, recipe="he2016", epochs=2, batch_size=64, score_batches=1,
                  score_batch_size=32, emissions=False, device="cpu", dense_dir=str(dense_dir))
    return {label: TrialConfig(**common, **values) for label, values in MEMBERS.items()}


def learned(row):
    """What a trial computed, without its timings."""
    history = [{k: v for k, v in h.items() if k not in ("epoch_seconds", "images_per_second")} for h in row["history"]]
    facts = ("removed", "scores", "layer_ticket_removed", "filters", "final_test_acc", "params", "macs", "trial_id")
    return {"history": history, **{k: row.get(k) for k in facts}}


@pytest.fixture(scope="module")
def alone(cifar_fixture, tmp_path_factory):
    torch.manual_seed(0)
    return {label: run_trial(config) for label, config in
            configs(cifar_fixture, tmp_path_factory.mktemp("alone")).items()}


def packed(configs_by_label, callbacks=None, resume=None, slots=3):
    callbacks, resume = callbacks or {}, resume or {}
    works = [(label, trial_work(c, callbacks.get(label, ()), resume.get(label))) for label, c in configs_by_label.items()]
    return {f.key: f for f in Pack(slots).run(Works(works))}


def test_each_member_of_a_pack_gets_the_row_it_gets_alone(cifar_fixture, tmp_path, alone):
    finished = packed(configs(cifar_fixture, tmp_path / "dense"))
    assert {label: f.error for label, f in finished.items()} == dict.fromkeys(MEMBERS)
    for label, row in alone.items():
        assert learned(finished[label].result) == learned(row), label
        assert finished[label].result["removed"] == row["removed"]
    assert len(alone["grasp p=2 resnet32"]["removed"]) == 2 and alone["dense resnet20"]["removed"] == []


def test_a_member_that_raises_leaves_and_the_others_finish(cifar_fixture, tmp_path, alone):
    def explode(state):
        if state.epoch == 1:
            raise RuntimeError("boom in epoch 1")

    finished = packed(configs(cifar_fixture, tmp_path / "dense"), callbacks={"grasp p=2 resnet32": [explode]})
    assert isinstance(finished["grasp p=2 resnet32"].error, RuntimeError)
    assert "boom in epoch 1" in str(finished["grasp p=2 resnet32"].error)
    for label in ("dense resnet20", "filter snip p=1 resnet20"):
        assert learned(finished[label].result) == learned(alone[label])


def test_a_nan_loss_fails_its_member_only(cifar_fixture, tmp_path):
    members = configs(cifar_fixture, tmp_path / "dense")
    members["grasp p=2 resnet32"] = TrialConfig(**{**members["grasp p=2 resnet32"].to_dict(), "lr": 1e30})
    finished = packed({k: members[k] for k in ("grasp p=2 resnet32", "filter snip p=1 resnet20")})
    assert "training loss is nan" in str(finished["grasp p=2 resnet32"].error).lower()
    assert finished["filter snip p=1 resnet20"].result["status"] == "finished"


class PowerCut(BaseException):
    """The process dies: nothing below the pack catches it."""


def test_a_pack_cut_mid_epoch_resumes_each_member_from_its_checkpoint(cifar_fixture, tmp_path, alone, monkeypatch):
    members = configs(cifar_fixture, tmp_path / "dense")
    store = SweepStore(tmp_path / "sweep")

    def reporters():
        return {label: [MemberReporter(1, 2, None, [0], c, (), store, c.hash())] for label, c in members.items()}

    step, calls = Run.step, {"n": 0}

    def cut_mid_second_epoch(run):  # every member stepped 4 batches + its epoch end, then 2 batches more
        calls["n"] += 1
        if calls["n"] > len(members) * (STEPS_PER_EPOCH + 1 + 2):
            raise PowerCut()
        return step(run)

    monkeypatch.setattr(Run, "step", cut_mid_second_epoch)
    with pytest.raises(PowerCut):
        packed(members, reporters())
    monkeypatch.setattr(Run, "step", step)

    states = {label: resume_state(None, store.storage, c.hash(), c) for label, c in members.items()}
    assert {label: s["epoch"] for label, s in states.items()} == dict.fromkeys(members, 1)
    trained = {"steps": 0}

    def count(run):
        trained["steps"] += 1
        return step(run)

    monkeypatch.setattr(Run, "step", count)
    finished = packed(members, reporters(), resume=states, slots=2)  # another pack size: members land anywhere
    assert trained["steps"] == len(members) * (STEPS_PER_EPOCH + 1)  # one epoch again per member, no more
    for label, row in alone.items():
        result = finished[label].result
        assert result["resumed_from_epoch"] == 1 and len(result["history"]) == 2
        assert learned(result) == learned(row), label


def test_energy_is_split_by_images_times_macs():
    """Two runs that did 1x and 3x the work between two readings get 1/4 and 3/4 of its increase."""

    class FakeMeter:
        def __init__(self):
            self.kwh = 0.0

        def so_far(self):
            return {"energy_kwh": self.kwh, "co2_kg": self.kwh / 2, "cpu_energy_kwh": self.kwh,
                    "gpu_energy_kwh": 0.0, "ram_energy_kwh": 0.0, "country": "FRA", "gpu_share": 1.0,
                    "emissions_method": "cpu:test"}

        def __exit__(self, *exc):
            pass

    class Stub:  # what the pack's metering reads of a run, and records into
        def __init__(self, macs):
            self.images, self.report = 0, RunReport()
            self.terms = RunTerms(energy=EnergyTerms("FRA", 1.0, True, macs))

    split, meter, a, b = EnergySplit(), FakeMeter(), Stub(100), Stub(300)
    split.meters[("FRA", 1.0)], split.last[("FRA", 1.0)] = meter, meter.so_far()
    metering = Metering(split)
    metering.join(a)
    metering.join(b)
    a.images, b.images, meter.kwh = 10, 10, 4.0
    metering.settle()
    assert (a.report.energy["energy_kwh"], b.report.energy["energy_kwh"]) == (1.0, 3.0)
    assert b.report.energy["co2_kg"] == 1.5 and "among up to 2 runs" in b.report.energy["energy_split"]
    assert a.report.peak_members == b.report.peak_members == 2
    metering.leave(a)
    left = copy.deepcopy(a.report.energy)
    b.images, meter.kwh = 20, 6.0
    metering.settle()
    assert left["energy_kwh"] == 1.0 and b.report.energy["energy_kwh"] == 5.0  # alone after a left
