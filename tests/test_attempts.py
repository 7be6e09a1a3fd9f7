"""What a trial carries from one attempt to the next, without Ray: the energy of every attempt, and
the CKA of a ticket that finished before its dense run, filled in once the dense run is stored."""

import io

import pytest
import torch

from layerlth.foundations.config import TrialConfig
from layerlth.sweep.late_similarity import fill_similarity
from layerlth.sweep.store import SweepStore
from layerlth.tickets.trial import run_trial
from layerlth.training.checkpoints import checkpoint_state, load_state, ticket_weights

TICKET = dict(kind="at_init", criterion="grasp", p=1, dataset="digits", arch="resnet20", recipe="he2016",
              train_subset=128, score_batches=1, device="cpu")


class Killed(Exception):
    """Stands in for a power cut after the last checkpoint."""


def test_energy_sums_over_two_attempts(tmp_path):
    config = TrialConfig(**TICKET, epochs=3, dense_dir=str(tmp_path / "dense"))
    saved = {}

    def checkpoint_at_1_die_at_2(state):
        if state.epoch == 1 and state.metrics:
            saved["file"] = io.BytesIO()
            torch.save(checkpoint_state(state, config, [0]), saved["file"])
        if state.epoch == 2:
            raise Killed  # epoch 2's energy is lost with the attempt: it is trained again

    with pytest.raises(Killed):
        run_trial(config, callbacks=[checkpoint_at_1_die_at_2])
    saved["file"].seek(0)
    resume = load_state("checkpoint", config, saved["file"])
    [first] = resume["context"]["energy_attempts"]  # the first attempt, measured up to its checkpoint
    result = run_trial(config, resume=resume)

    attempts = result["energy_attempts"]
    assert len(attempts) == 2 and attempts[0] == first
    assert first["energy_kwh"] > 0 and attempts[1]["energy_kwh"] > 0
    for name in ("energy_kwh", "co2_kg", "cpu_energy_kwh", "ram_energy_kwh"):
        assert result[name] == pytest.approx(attempts[0][name] + attempts[1][name], rel=1e-9)
    assert result["resumed_from_epoch"] == 1 and result["epochs_trained"] == 3


def test_one_attempt_keeps_its_own_energy(tmp_path):
    result = run_trial(TrialConfig(**TICKET, epochs=1, dense_dir=str(tmp_path / "dense")))
    assert [a["energy_kwh"] for a in result["energy_attempts"]] == [result["energy_kwh"]]


def test_cka_filled_in_once_the_dense_run_lands(tmp_path):
    config = TrialConfig(**TICKET, epochs=2, emissions=False, dense_dir=str(tmp_path / "dense"))
    store = SweepStore(tmp_path / "sweep")

    def keep_final_weights(state):  # what the sweep's trainable does at a ticket's last epoch
        if state.epoch == 2:
            store.storage.write_bytes(store.weights_name(config.hash()), ticket_weights(state, config))

    early = run_trial(config, callbacks=[keep_final_weights])
    assert early["cka_vs_dense"] is None  # its dense run was not stored yet
    store.save(early)
    assert fill_similarity(store) == 0  # still none: nothing to compare with

    run_trial(config.dense_config())
    assert fill_similarity(store) == 1
    filled = store.result(config.hash())["cka_vs_dense"]
    direct = run_trial(config)["cka_vs_dense"]  # the same ticket, trained with its dense run stored
    assert 0 < filled <= 1 and filled == pytest.approx(direct, abs=1e-6)
    assert fill_similarity(store) == 0  # done once


def test_ticket_weights_of_another_arch_are_refused(tmp_path):
    config = TrialConfig(**TICKET, epochs=1, emissions=False, dense_dir=str(tmp_path / "dense"))
    saved = {}

    def keep(state):
        if state.epoch == 1:
            saved["bytes"] = ticket_weights(state, config)

    run_trial(config, callbacks=[keep])
    other = TrialConfig(**{**TICKET, "arch": "resnet32"})
    from layerlth.training.checkpoints import UnsafeCheckpoint

    with pytest.raises(UnsafeCheckpoint, match="not of the trial's 'resnet32'"):
        load_state("weights.pt", other, io.BytesIO(saved["bytes"]))
    assert load_state("weights.pt", config, io.BytesIO(saved["bytes"]))["epoch"] == 1


def test_existing_configs_keep_their_trial_hash_and_dense_key():
    """Relaunches find finished work by these: computed before this round of options was added."""
    pinned = [
        (dict(kind="dense", arch="resnet56", dataset="cifar10", recipe="paper", seed=2), "de48d9981f6e", "1eb3a02bf4ee"),
        (dict(kind="after_training", arch="resnet32", dataset="cifar10", criterion="kl", p=1, rewind=25),
         "7df2be83b7d9", "1ed809d3c02b"),
        (dict(kind="filter", arch="resnet32", dataset="cifar10", criterion="grasp", p=2, seed=1,
              robustness=("cifar10c", "cifar102")), "3a5324c309d5", "559ab7718674"),
    ]
    for values, trial_hash, dense_key in pinned:
        for extra in ({}, {"stop_rungs": (0.25, 0.5), "stop_margin": 1.0}):  # early stopping: the same trial
            config = TrialConfig(**values, **extra)
            assert (config.hash(), config.dense_key()) == (trial_hash, dense_key), values
