"""Robustness as part of a trial: options, columns in the row, failures, and the grid's data check."""

import json

import pytest

from layerlth import TrialConfig, run_trial
from layerlth.cli import parser
from layerlth.data import synthetic
from layerlth.foundations.config import from_arguments
from layerlth.measure.robustness import archives, corruptions
from layerlth.sweep import grid
from layerlth.sweep.grid import GridError, check_data
from layerlth.sweep.store import SweepStore

FAST = dict(arch="resnet20", dataset="synthetic", recipe="he2016", epochs=1, batch_size=64, score_batches=2,
            score_batch_size=32, emissions=False)
ROBUST = dict(robustness=("cifar10c", "fgsm", "pgd"), corruption_images=8, attack_images=32, pgd_steps=2)


def test_the_cli_takes_the_robustness_list_and_attack_settings():
    args = parser().parse_args(["ticket", "--robustness", "cifar10c", "cifar102", "fgsm", "pgd", "--attack-eps", "0.01"])
    config = from_arguments(args)
    assert config.robustness == ("cifar10c", "cifar102", "fgsm", "pgd") and config.attack_eps == 0.01
    with pytest.raises(ValueError, match="robustness='pgd': expected a list"):  # YAML `robustness: pgd`
        TrialConfig.from_dict({"robustness": "pgd"})


def test_robustness_changes_the_trial_name_but_not_the_dense_run():
    plain, robust = TrialConfig(**FAST), TrialConfig(**FAST, **ROBUST)
    assert robust.dense_key() == plain.dense_key() and robust.hash() != plain.hash()
    assert TrialConfig(**FAST, robustness=()).hash() == plain.hash()  # defaults stay out of the hash


@pytest.mark.parametrize("change,message", [
    ({"robustness": ("cifar10-c",)}, r"unknown robustness \['cifar10-c'\]; allowed: \['cifar10c', 'cifar102', 'fgsm', 'pgd'\]"),
    ({"robustness": ("cifar102",)}, "'cifar102' is a re-collected CIFAR-10 test set, for models trained on cifar10, not 'synthetic'"),
    ({"robustness": ("cifar10c",), "corruption_source": "archive"}, "'archive' is CIFAR-10-C, for models trained on cifar10"),
    ({"corruption_source": "imagenet"}, "unknown corruption_source 'imagenet'"),
    ({"robustness": ("pgd",), "attack_eps": 8.0}, r"eps must be in \[0, 1\]"),
    ({"robustness": ("pgd",), "attack_images": 0}, "attacked images must be >= 1"),
])
def test_bad_robustness_options_fail_before_training(change, message):
    with pytest.raises(ValueError, match=message):
        run_trial(dict(FAST, **change))


def test_dense_and_ticket_rows_carry_robustness_and_a_reused_dense_run_is_evaluated(tmp_path):
    first = run_trial(dict(FAST, **ROBUST))
    again = run_trial(dict(FAST, **ROBUST, out_dir=str(tmp_path)))
    assert not first["dense_reused"] and again["dense_reused"]
    for row in (first, again):
        assert row["robustness_error"] is None and row["cifar10c_source"] == "generated"
        assert 0 <= row["acc_pgd"] <= row["acc_fgsm"] <= 1 and row["acc_cifar102"] is None
        assert (row["attack_eps"], row["pgd_steps"], row["attack_images"]) == (8 / 255, 2, 32)
        assert set(row["robustness"]["cifar10c"]["corruptions"]) == set(corruptions.ALL)
    # the stored final weights give the reused trial the same numbers
    assert {k: first[k] for k in ("acc_cifar10c", "acc_fgsm", "acc_pgd")} == {k: again[k] for k in ("acc_cifar10c", "acc_fgsm", "acc_pgd")}
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["robustness"]["cifar10c"]["severities"].keys() == {"1", "2", "3", "4", "5"}
    ticket = run_trial(dict(FAST, **ROBUST, kind="at_init", criterion="grasp", p=1))
    assert ticket["removed"] and ticket["robustness_error"] is None and ticket["acc_cifar10c"] is not None
    store = SweepStore(tmp_path / "sweep")
    for row in (first, ticket):
        store.save(row)
    table = store.write_table()
    assert {"acc_cifar10c", "cifar10c_source", "acc_fgsm", "acc_pgd", "robustness_error"} <= set(table.columns)


def test_a_failing_robustness_evaluation_keeps_the_trained_result(monkeypatch):
    def disk_full(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(corruptions, "generated", disk_full)
    row = run_trial(dict(FAST, **ROBUST, kind="at_init", criterion="grasp", p=1))
    assert row["status"] == "finished" and row["final_test_acc"] is not None
    assert row["acc_cifar10c"] is None and row["acc_fgsm"] is not None  # the attacks still ran
    assert row["robustness_error"] == "cifar10c: OSError: No space left on device"


def test_a_grid_checks_its_robustness_data_before_ray_starts(tmp_path, monkeypatch):
    configs = [TrialConfig(**FAST, **ROBUST, data_dir=str(tmp_path))]
    check_data(configs)  # generates the corruptions of the synthetic test set, once
    assert len(list((tmp_path / "corruptions-generated").glob("synthetic-8-*/complete.json"))) == 1

    def offline(*args):
        raise OSError("no network")

    monkeypatch.setattr(archives, "_download", offline)
    monkeypatch.setattr(grid, "load_dataset", lambda *args: synthetic())  # CIFAR-10 itself is not here
    cifar = TrialConfig(**dict(FAST, dataset="cifar10"), robustness=("cifar102",), data_dir=str(tmp_path))
    with pytest.raises(GridError, match=r"robustness \['cifar102'\] of dataset 'cifar10': CIFAR-10.2 is not in .*cifar102_test.npz"):
        check_data([cifar])
