"""Errors said once, and all of them: a trial alone reports its error once (the CLI's line, no pack
log beside it); a grid names every bad value in one error before Ray starts; a misspelt key or name
gets the nearest allowed one."""

import logging
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
import run as sweep_cli  # noqa: E402

import layerlth.sweep.runner as runner  # noqa: E402
from layerlth import run_trial  # noqa: E402
from layerlth.cli import main  # noqa: E402
from layerlth.foundations.config import TrialConfig  # noqa: E402
from layerlth.foundations.field_checks import did_you_mean  # noqa: E402
from layerlth.sweep.grid import GridError, expand, load_grid  # noqa: E402
from layerlth.training.packs.pack import Pack, Works, run_alone  # noqa: E402


def failing(message="boom"):
    raise ValueError(message)
    yield  # a trial generator that fails in its setup


# --- a trial alone: its error once, raised to its caller; a pack's member: logged once ---------------

def test_bad_ticket_is_said_once(capsys, caplog):
    caplog.set_level(logging.INFO)
    with pytest.raises(SystemExit) as exit:
        main(["ticket", "--criterion", "grsp", "--recipe", "he2061", "--no-emissions"])
    said = capsys.readouterr().err + caplog.text
    assert exit.value.code == 2
    assert said.count("unknown criterion 'grsp'") == 1 and said.count("unknown recipe 'he2061'") == 1, said
    assert "did you mean 'grasp'?" in said and "did you mean 'he2016'?" in said and "pack member" not in said


def test_a_pack_of_one_raises_without_logging(caplog):
    with pytest.raises(ValueError, match="boom"):
        run_alone(failing())
    assert "boom" not in caplog.text


def test_a_pack_of_several_logs_a_members_failure_once(caplog):
    finished = list(Pack(2).run(Works([("bad", failing())])))
    assert [(f.key, str(f.error)) for f in finished] == [("bad", "boom")]
    assert caplog.text.count("pack member bad failed: ValueError: boom") == 1, caplog.text


# --- the nearest allowed name -------------------------------------------------------------------

def test_did_you_mean_the_nearest_name():
    assert did_you_mean("critrion", ["criterion", "kind", "p"]) == "did you mean 'criterion'?"
    assert did_you_mean("grsp", ["grasp", "snip", "synflow"]) == "did you mean 'grasp'?"
    assert did_you_mean("resnet21", ["resnet20", "resnet32"]) == "did you mean 'resnet20'?"
    assert did_you_mean(["epoch", "critrion"], ["epochs", "criterion"]) == \
        "did you mean 'epochs' for 'epoch', 'criterion' for 'critrion'?"
    assert did_you_mean("zzz", ["grasp"]) == ""


def test_unknown_trial_key_and_bad_names_get_the_nearest_one():
    with pytest.raises(ValueError, match=r"unknown trial config keys \['epoch'\]; allowed: .*; "
                                         r"did you mean 'epochs'\?"):
        run_trial({"epoch": 3})
    with pytest.raises(ValueError, match=r"unknown kind 'at_int'; .*did you mean 'at_init'\?"):
        run_trial({"kind": "at_int"})
    with pytest.raises(ValueError, match=r"aggregate='mena': expected one of \['sum', 'mean'\]; "
                                         r"did you mean 'mean'\?"):
        TrialConfig.from_dict({"aggregate": "mena"})


def test_a_config_dict_names_every_bad_value():
    with pytest.raises(ValueError) as error:
        TrialConfig.from_dict({"epochs": "ten", "lr": "fast", "critrion": "snip"})
    lines = str(error.value).splitlines()
    assert lines[0] == "3 bad values:" and len(lines) == 4, lines
    assert "epochs='ten'" in lines[1] and "lr='fast'" in lines[2] and "did you mean 'criterion'?" in lines[3]


# --- a grid: every problem in one error, before Ray -------------------------------------------------

GRID = "defaults: {arch: resnet20, dataset: digits, epochs: 1}\nstudies:\n  - {kind: dense}\n  - %s\n"


def grid_file(tmp_path, study):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID % study)
    return str(path)


def grid_error(tmp_path, study):
    with pytest.raises(GridError) as error:
        expand(load_grid(grid_file(tmp_path, study)))
    return str(error.value)


def test_a_grid_names_every_bad_value_at_once(tmp_path):
    message = grid_error(tmp_path, "{kind: at_init, epochs: ten, criterion: grsp, p: [1, 2]}")
    lines = message.splitlines()
    assert lines[0] == "2 problems in the grid:" and len(lines) == 3, message  # said once, not once per p
    assert re.search(r"studies\[1\] \(.*\): epochs='ten': expected an integer >= 1", lines[1]), message
    assert re.search(r"studies\[1\] \(.*\): unknown criterion 'grsp'; allowed: \[.*\]; "
                     r"did you mean 'grasp'\?", lines[2]), message


def test_a_bad_default_is_named_once_where_it_is_written(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("defaults: {epochs: ten, dataset: digits}\nstudies:\n  - {kind: dense}\n"
                    "  - {kind: dense, seed: 1}\n  - {kind: at_init, recipe: he2061, p: 1}\n")
    with pytest.raises(GridError) as error:
        expand(load_grid(str(path)))
    lines = str(error.value).splitlines()[1:]
    assert lines[0] == "  defaults: epochs='ten': expected an integer >= 1 or null" and len(lines) == 2, lines
    assert "studies[2] (kind=at_init, recipe=he2061, p=1): unknown recipe 'he2061'" in lines[1]
    assert "did you mean 'he2016'?" in lines[1]


def test_a_problem_across_fields_is_named_once_per_study(tmp_path):
    message = grid_error(tmp_path, "{kind: at_init, p: [4, 9], seed: [0, 1, 2]}")
    lines = message.splitlines()
    assert len(lines) == 3 and "p=4 is not possible" in lines[1] and "p=9 is not possible" in lines[2], message


def test_a_misspelt_grid_key_gets_the_nearest_field(tmp_path):
    message = grid_error(tmp_path, "{kind: at_init, critrion: snip, p: 1}")
    assert re.search(r"^studies\[1\]: unknown fields \['critrion'\]; allowed: \[.*\]; "
                     r"did you mean 'criterion'\?$", message), message


def test_run_py_prints_every_problem_and_exits_2_before_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "start_ray", lambda args: pytest.fail("Ray started for a bad grid"))
    path = grid_file(tmp_path, "{kind: at_init, epochs: ten, criterion: grsp, critrion: snip, p: 1}")
    assert sweep_cli.main(["--grid", path, "--no-wandb", "--storage", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sweeps/run.py: error: 3 problems in the grid:\n"), err
    for said in ("unknown fields ['critrion']", "did you mean 'criterion'?", "epochs='ten'",
                 "did you mean 'grasp'?"):
        assert err.count(said) == 1, (said, err)
    assert not (tmp_path / "store").exists()
