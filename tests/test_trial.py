import json

import pytest

from layerlth import TrialConfig, build_model, run_trial
from layerlth.data import DatasetUnavailable
from layerlth.models import select_lowest

FAST = dict(arch="resnet20", dataset="synthetic", recipe="he2016", epochs=2, batch_size=64,
            score_batches=2, score_batch_size=32, emissions=False)


def test_ticket_trial_removes_scores_trains_and_measures(tmp_path):
    config = TrialConfig(**FAST, p=2, criterion="grasp", checkpoint_epochs=(0, 2), out_dir=str(tmp_path))
    result = run_trial(config)
    assert len(result["removed"]) == 2 and set(result["removed"]) <= set(result["scores"])
    assert result["removed"] == select_lowest(build_model("resnet20"), result["scores"], 2)
    assert result["params"] < result["dense_params"] and 0 < result["macs_reduction"] < 1
    assert result["epochs_trained"] == 2 and len(result["history"]) == 2
    assert result["memory_method"].startswith("estimate") and result["memory_bytes"] > 0
    assert result["images_per_second"] > 0 and result["trial_id"] == config.hash()
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["removed"] == result["removed"]
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {"weights_epoch0.pt", "weights_epoch2.pt"}


def test_p0_is_the_dense_baseline_and_trials_are_deterministic():
    a, b = run_trial(TrialConfig(**FAST)), run_trial(dict(FAST, dense_dir="elsewhere"))
    assert a["removed"] == [] and a["params"] == a["dense_params"]
    assert not a["dense_reused"] and not b["dense_reused"]
    assert run_trial(dict(FAST, kind="dense"))["dense_reused"]  # same dense key: read from the store
    assert a["history"] == [dict(h, epoch_seconds=x["epoch_seconds"], images_per_second=x["images_per_second"])
                            for h, x in zip(b["history"], a["history"])]


def test_emissions_come_from_codecarbon_with_their_method():
    result = run_trial(dict(FAST, epochs=1, emissions=True, country="FRA"))
    assert result["energy_kwh"] > 0 and result["co2_kg"] > 0 and result["country"] == "FRA"
    assert "cpu:" in result["emissions_method"] and "ram:" in result["emissions_method"]


@pytest.mark.parametrize(
    "change,error,message",
    [
        ({"arch": "resnet21"}, ValueError, "unknown arch 'resnet21'"),
        ({"criterion": "hrank2"}, ValueError, "unknown criterion 'hrank2'"),
        ({"p": 4}, ValueError, "p=4 is not possible for resnet20: allowed 0..3"),
        ({"dataset": "nowhere.npz"}, DatasetUnavailable, "'nowhere.npz' does not exist"),
        ({"recipe": "fast"}, ValueError, "unknown recipe 'fast'"),
        ({"epochs": 2, "checkpoint_epochs": (5,)}, ValueError, r"checkpoint_epochs \[5\] outside 0..2"),
    ],
)
def test_bad_configs_fail_before_training(change, error, message, monkeypatch):
    import layerlth.tickets.trial

    monkeypatch.setattr(layerlth.tickets.trial, "load_dataset", lambda *a: pytest.fail("data loaded before validation"))
    with pytest.raises(error, match=message):
        run_trial(dict(FAST, **change))


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match=r"unknown trial config keys \['epoch'\]"):
        run_trial({"epoch": 3})


def test_resnet20_learns_on_real_cifar_images(cifar_fixture):
    result = run_trial(dict(arch="resnet20", dataset=cifar_fixture, recipe="he2016", epochs=4,
                            emissions=False))
    assert result["final_test_acc"] > 0.2  # chance is 0.1; 4 short epochs on 1280 images
