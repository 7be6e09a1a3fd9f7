"""Grids and the sweep CLI before Ray: expansion, validation, dry run."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
import run as sweep_cli  # noqa: E402

from layerlth.sweep.grid import expand, failing_trials, load_grid  # noqa: E402


def write(tmp_path, text):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return str(path)


def test_paper_grid_declares_the_papers_tables():
    entries = expand(load_grid("paper"))
    kinds = {}
    for _, c in entries:
        kinds.setdefault(c.kind, []).append(c)
    assert len(entries) == 120 and {c.seed for _, c in entries} == {0, 1, 2}
    assert {(c.criterion, c.p) for c in kinds["at_init"] if c.arch == "resnet32"} == {
        (crit, p) for crit in ("snip", "grasp") for p in range(1, 6)}
    assert sorted({c.p for c in kinds["at_init"] if c.arch == "resnet56"}) == [3, 4, 5, 12]
    assert {(c.criterion, c.rewind) for c in kinds["after_training"]} == {
        (crit, r) for crit in ("hrank", "expectabs", "pls", "random", "kl") for r in (0, 25, 50, 75)}
    assert all(c.recipe == "paper" and c.dataset == "cifar10" for _, c in entries)


def test_dry_run_lists_trials_and_cost(capsys):
    assert sweep_cli.main(["--grid", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "grid paper: 120 trials" in out and "GPU-hours" in out and "resnet56" in out


@pytest.mark.parametrize(
    "study,message",
    [
        ("{kind: at_init, criterion: grasp2, p: 1}", r"studies\[1\] \(kind=at_init, criterion=grasp2, p=1\): unknown criterion 'grasp2'"),
        ("{kind: at_init, criterion: grasp, p: [1, 5]}", r"studies\[1\] \(kind=at_init, criterion=grasp, p=5\): p=5 is not possible for resnet20"),
        ("{kind: at_init, dataset: missing.npz, p: 1}", r"studies\[1\] .*'missing.npz' does not exist"),
        ("{kind: at_init, pp: 1}", r"studies\[1\]: unknown fields \['pp'\]"),
    ],
)
def test_bad_grid_exits_before_any_trial_naming_the_entry(tmp_path, capsys, monkeypatch, study, message):
    import layerlth.sweep.runner as runner

    monkeypatch.setattr(runner, "start_ray", lambda args: pytest.fail("Ray started for a bad grid"))
    grid = write(tmp_path, f"defaults: {{arch: resnet20, dataset: digits, epochs: 1}}\nstudies:\n  - {{kind: dense}}\n  - {study}\n")
    assert sweep_cli.main(["--grid", grid, "--no-wandb"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_unknown_grid_and_bad_resources_are_named(tmp_path, capsys):
    assert sweep_cli.main(["--grid", "papers"]) == 2
    assert "unknown grid 'papers'; built-in grids: ['demo', 'depth', 'imagenet', 'imagenet_fast', 'paper', 'paper-quick']" in capsys.readouterr().err
    assert sweep_cli.main(["--grid", "demo", "--gpus-per-trial", "1.5"]) == 2
    assert "--gpus-per-trial 1.5" in capsys.readouterr().err


def test_lists_expand_and_tuple_fields_take_lists(tmp_path):
    grid = load_grid(write(tmp_path, "defaults: {dataset: synthetic, seed: [0, 1]}\nstudies:\n"
                                     "  - {kind: after_training, criterion: [kl, l1], p: 1, epochs: 8, "
                                     "rewind_epochs: [0, 4], rewind: [0, 4], _test_fail: once}\n"))
    entries = expand(grid)
    assert len(entries) == 8 and all(c.rewind_epochs == (0, 4) for _, c in entries)
    assert set(failing_trials(grid).values()) == {"once"} and len(failing_trials(grid)) == 8
