"""Algorithm 1: one dense training shared by every after-training ticket, rewinding, re-init."""

import pytest
import torch

import layerlth.tickets.trial
from layerlth import TrialConfig, run_trial
from layerlth.tickets.dense_runs import DenseRun, default_rewind_epochs
from layerlth.tickets.procedures import after_training
from layerlth.tickets.trial import initial_dense

BASE = dict(kind="after_training", arch="resnet20", dataset="synthetic", recipe="he2016", epochs=4, batch_size=64,
            rewind_epochs=(0, 2), score_batches=2, score_batch_size=32, emissions=False, p=2)


@pytest.fixture
def counted(monkeypatch):
    calls = []

    class Counting(layerlth.tickets.trial.Run):  # every training a trial starts, by its first epoch
        def __init__(self, model, data, recipe, seed=0, start_epoch=0, *args, **kwargs):
            calls.append(start_epoch)
            super().__init__(model, data, recipe, seed, start_epoch, *args, **kwargs)

    monkeypatch.setattr(layerlth.tickets.trial, "Run", Counting)
    return calls


def test_default_rewind_points_scale_the_papers():
    assert default_rewind_epochs(200) == (0, 25, 50, 75)
    assert default_rewind_epochs(8) == (0, 1, 2, 3)


def test_the_dense_net_is_trained_once_for_all_criteria_and_rewinds(counted):
    results = [run_trial(dict(BASE, criterion=c, rewind=r)) for c in ("kl", "expectabs") for r in (0, 2)]
    assert counted == [0, 0, 2, 0, 2]  # one dense training from 0, then four tickets
    assert [r["start_epoch"] for r in results] == [0, 2, 0, 2]
    assert [r["epochs_trained"] for r in results] == [4, 2, 4, 2]
    assert len({r["dense_run"] for r in results}) == 1
    assert all(0 < r["cka_vs_dense"] <= 1 + 1e-9 for r in results)
    # learning-rate rewinding: the ticket resumes the dense schedule at its rewind epoch
    recipe = layerlth.tickets.trial.training_recipe(TrialConfig(**BASE))
    assert results[1]["history"][0]["lr"] == recipe.lr_at(2)
    dense = run_trial(dict(BASE, kind="dense", p=0))
    assert dense["dense_reused"] and counted == [0, 0, 2, 0, 2]


def test_rewound_weights_equal_the_saved_epoch_weights_bit_for_bit():
    config = TrialConfig(**BASE, criterion="kl", rewind=2)
    dense_row = run_trial(dict(BASE, kind="dense", p=0))
    run = DenseRun(config, 4)
    assert dense_row["dense_run"] == str(run.directory) and run.complete()
    from layerlth.data import load_dataset

    data = load_dataset("synthetic")
    ticket, facts, start = after_training(initial_dense(config, data, torch.device("cpu")), run, config, data)
    saved = run.weights(2)
    kept = ticket.state_dict()
    assert start == 2 and len(facts["removed"]) == 2
    assert all(torch.equal(value, saved[key]) for key, value in kept.items())
    assert not torch.equal(saved["conv1.weight"], run.weights(0)["conv1.weight"])


def test_random_reinit_starts_from_fresh_weights(counted):
    result = run_trial(dict(BASE, criterion="kl", reinit=True))
    assert result["start_epoch"] == 0 and result["epochs_trained"] == 4 and counted == [0, 0]


def test_a_rewind_point_the_dense_run_does_not_keep_is_refused():
    with pytest.raises(ValueError, match=r"rewind=3 is not among the dense run's rewind_epochs \(0, 2\)"):
        run_trial(dict(BASE, criterion="kl", rewind=3))


def test_filter_ticket_trial_matches_the_layer_ticket_size():
    result = run_trial(dict(BASE, kind="filter", criterion="grasp", p=1, epochs=1, rewind_epochs=()))
    assert result["filters"] == result["dense_filters"] - 32  # one stage-1 block: two convs of 16
    assert result["params"] < result["dense_params"] and result["cka_vs_dense"] is None


def test_filter_tickets_need_a_per_weight_criterion():
    with pytest.raises(ValueError, match="filter tickets need a per-weight criterion, not 'kl'"):
        run_trial(dict(BASE, kind="filter", criterion="kl"))


def test_after_training_tickets_can_re_score_the_trained_net_in_rounds(counted):
    result = run_trial(dict(BASE, criterion="kl", rewind=2, rounds=2))
    first, second = result["removal_rounds"]
    assert len(first["removed"]) == len(second["removed"]) == 1
    assert result["removed"] == first["removed"] + second["removed"] and result["scores"] == first["scores"]
    assert first["removed"][0] not in second["scores"]  # round 2 scores the net without it
    assert result["start_epoch"] == 2 and counted == [0, 2]
