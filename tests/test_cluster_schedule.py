"""The schedule without a phase barrier: what each trial waits for, the simulation on N slots, and
the Tune searcher that hands trials out in that order."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from layerlth.foundations.config import TrialConfig
from layerlth.foundations.recipes import training_recipe
from layerlth.sweep.grid import expand, load_grid
from layerlth.sweep.jobs import flops_duration, jobs, schedule_table, simulate
from layerlth.tickets.dense_runs import DenseRun

BASE = dict(dataset="digits", arch="resnet20", recipe="he2016", epochs=4, score_batches=1, emissions=False)


def entries(dense_dir="unused"):
    configs = [TrialConfig(**BASE, kind="dense", dense_dir=dense_dir),
               TrialConfig(**BASE, kind="after_training", criterion="kl", p=1, dense_dir=dense_dir),
               TrialConfig(**BASE, kind="at_init", criterion="snip", p=1, dense_dir=dense_dir),
               TrialConfig(**BASE, kind="at_init", criterion="grasp", p=1, dense_dir=dense_dir)]
    return [(c.kind + ("" if c.is_dense else f"-{c.criterion}"), c) for c in configs]


def by_label(job_list, hours):
    return {job.label: hour for job, hour in zip(job_list, hours)}


def hours_by_kind(config):  # dense 10 h, after-training tickets 5 h, the rest 10 h
    return 3600 * (5 if config.kind == "after_training" else 10)


def test_no_barrier_starts_at_init_tickets_beside_the_dense_run():
    job_list = jobs(entries())
    assert [j.label for j in job_list] == ["dense", "after_training-kl", "at_init-snip", "at_init-grasp"]
    free = simulate(job_list, 2, hours_by_kind)
    assert by_label(job_list, free.starts) == {"dense": 0, "at_init-snip": 0, "after_training-kl": 10, "at_init-grasp": 10}
    assert free.hours == 20 and free.busy == pytest.approx(35 / 40)
    phased = simulate(job_list, 2, hours_by_kind, barrier=True)  # a slot idles while the dense run trains
    assert by_label(job_list, phased.starts) == {"dense": 0, "after_training-kl": 10, "at_init-snip": 10,
                                                  "at_init-grasp": 15}
    assert phased.hours == 25


def test_tickets_without_a_dense_trial_get_one_and_one_owner_per_dense_run():
    ticket = entries()[1]
    seeds = [("a", TrialConfig(**BASE, kind="dense", seed=1)), ("b", TrialConfig(**BASE, kind="at_init", p=0, seed=1))]
    job_list = jobs([ticket, *seeds])
    assert [j.label for j in job_list] == ["a", "b", "dense run for after_training-kl", "after_training-kl"]
    assert job_list[2].config.kind == "dense" and job_list[2].owns == ticket[1].dense_key() == job_list[3].needs
    schedule = simulate(job_list, 4, hours_by_kind)
    starts, ends = by_label(job_list, schedule.starts), by_label(job_list, schedule.ends)
    assert starts["b"] == ends["a"] == 10  # same dense run: never trained twice at once
    assert ends["b"] == 10  # ... and the second one reads the stored run
    assert starts["after_training-kl"] == 10 and schedule.hours == 15


@pytest.fixture(scope="module")
def paper():
    return jobs(expand(load_grid("paper"))), flops_duration(4.0)  # the estimate is cached per config


@pytest.mark.parametrize("slots", [8, 32])
def test_paper_grid_schedule(slots, paper):
    job_list, duration = paper
    free, phased = simulate(job_list, slots, duration), simulate(job_list, slots, duration, barrier=True)
    total = sum(duration(j.config) for j in job_list) / 3600
    longest_chain = max(duration(j.config) for j in job_list if j.owns) / 3600 + max(
        duration(j.config) for j in job_list if j.needs) / 3600
    assert free.hours >= max(total / slots, longest_chain) - 1e-9
    assert free.hours < phased.hours and free.busy > phased.busy
    owners = {j.owns: i for i, j in enumerate(job_list) if j.owns}
    assert len(owners) == 6
    last_dense = max(phased.ends[i] for i in owners.values())
    for i, job in enumerate(job_list):
        if job.needs:  # every after-training ticket starts after its own dense run ends
            assert free.starts[i] >= free.ends[owners[job.needs]]
            assert phased.starts[i] >= last_dense
    others = [free.starts[i] for i, j in enumerate(job_list) if not j.owns and not j.needs]
    assert others.count(0) == slots - len(owners)  # at-init and filter tickets fill the free slots at once
    table = schedule_table(expand(load_grid("paper")), [slots], duration)
    assert f"{phased.hours:.1f} h" in table and f"{free.hours:.1f} h" in table


def test_bad_slots_is_an_early_error():
    with pytest.raises(ValueError, match="slots must be >= 1, got 0"):
        simulate(jobs(entries()), 0, hours_by_kind)


def test_searcher_releases_a_ticket_when_its_dense_run_is_stored(tmp_path):
    from ray.tune.search import Searcher

    from layerlth.sweep.tune.dense_gate import DenseRunGate

    job_list = jobs(entries(str(tmp_path / "dense")))
    gate = DenseRunGate(job_list, [{"label": j.label} for j in job_list])
    assert gate.suggest("t1") == {"label": "dense"}
    assert gate.suggest("t2") == {"label": "at_init-snip"}  # the after-training ticket waits
    assert gate.suggest("t3") == {"label": "at_init-grasp"}
    assert gate.suggest("t4") is None
    gate.on_trial_complete("t2")
    assert gate.suggest("t4") is None  # still waits: no dense run stored
    dense = job_list[0].config
    run = DenseRun(dense, training_recipe(dense).epochs)
    for epoch in run.saved_epochs:  # stored: every promised weights file, then the result
        run.save_weights(SimpleNamespace(epoch=epoch, model=torch.nn.Linear(2, 2)))
    run.save_result({"status": "finished"})
    gate.on_trial_complete("t1")
    assert gate.suggest("t4") == {"label": "after_training-kl"}
    assert gate.suggest("t5") == Searcher.FINISHED
    saved = tmp_path / "gate.pkl"
    gate.save(str(saved))  # nothing: a relaunch rebuilds the gate from the grid and the storage
    assert not saved.exists()
    with pytest.raises(NotImplementedError, match="never restores a pickled searcher"):
        gate.restore(str(saved))
    rebuilt = DenseRunGate(job_list[1:2], [{"label": "after_training-kl"}])  # what a relaunch has left
    assert rebuilt.stored == {dense.dense_key()} and rebuilt.suggest("t6") == {"label": "after_training-kl"}


def test_searcher_drops_tickets_whose_dense_trial_errored(tmp_path):
    from ray.tune.search import Searcher

    from layerlth.sweep.tune.dense_gate import DenseRunGate

    job_list = jobs(entries(str(tmp_path / "dense")))[:2]
    gate = DenseRunGate(job_list, [{"label": j.label} for j in job_list])
    assert gate.suggest("t1") == {"label": "dense"}
    assert gate.suggest("t2") is None
    gate.on_trial_complete("t1", error=True)
    assert gate.suggest("t2") == Searcher.FINISHED  # the driver records the ticket as not run


def test_dry_run_prints_the_schedule_on_n_slots(capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
    import run as sweep_cli

    assert sweep_cli.main(["--grid", "demo", "--dry-run", "--slots", "2", "4"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("schedule of 8 trials")))
    assert [line.split()[0] for line in lines[header + 2:header + 4]] == ["2", "4"]
    assert sweep_cli.main(["--grid", "demo", "--dry-run", "--slots", "0"]) == 2
    assert "slots must be >= 1, got 0" in capsys.readouterr().err
