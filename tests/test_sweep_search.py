"""A depth search on a real (local) Ray: the driver killed mid-search and resumed ends with the same
p* as the same search uninterrupted, trains no finished trial again and unpickles nothing it reads back."""

import json
import sys
from pathlib import Path

import pytest
from test_sweep_ray import kill_driver_when, rows
from test_sweep_resume import plant

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import run as sweep_cli  # noqa: E402

GRID = """
name: deep
defaults: {dataset: digits, arch: resnet20, recipe: he2016, epochs: 3, score_batches: 1, emissions: false,
           train_subset: 512}
searches:
  - {criterion: grasp, seed: [0, 1], range: [1, 3]}
"""


@pytest.mark.slow  # two searches of 6-8 short trials and a kill, about 2 minutes on 2 cores
def test_killed_search_resumes_to_the_same_p_star(ray_session, tmp_path, capsys):
    grid = tmp_path / "deep.yaml"
    grid.write_text(GRID)
    storage, root = tmp_path / "store", tmp_path / "store" / "deep"
    argv = ["--grid", str(grid), "--storage", str(storage), "--no-wandb", "--max-concurrent", "2"]
    # the same search uninterrupted, with the same threads per trial (results depend on them)
    assert sweep_cli.main([*argv[:3], str(tmp_path / "plain"), *argv[4:]]) == 0
    plain = json.loads((tmp_path / "plain" / "deep" / "searches.json").read_text())[0]
    kill_driver_when(argv, tmp_path, lambda: (root / "trials").is_dir() and len(rows(root)) >= 4,
                     "the first round is stored")
    before = {t: (root / "trials" / t / "result.json").read_text() for t in rows(root)}
    assert len(before) < plain["trials"], "the search finished before the kill"
    marker = tmp_path / "pwned"
    for path in [p for p in (root / "tune").rglob("*") if p.is_file()]:
        plant(path, marker)

    capsys.readouterr()
    assert sweep_cli.main([*argv, "--resume"]) == 0
    out = capsys.readouterr().out
    assert not marker.exists()  # nothing planted ran
    found = json.loads((root / "searches.json").read_text())[0]
    assert (found["p_star"], found["rounds"], found["visited"]) == (plain["p_star"], plain["rounds"], plain["visited"])
    assert f"p* = {found['p_star'] if found['p_star'] is not None else 'none'}" in out
    after = rows(root)
    assert len(after) == found["trials"] == plain["trials"]  # every trial of the search, once
    for trial_id, text in before.items():  # finished before the kill: looked up, not trained again
        stored = (root / "trials" / trial_id / "result.json").read_text()
        old = json.loads(text)
        if old.get("cka_vs_dense") is None and old.get("kind") != "dense":
            # a ticket that finished before its dense run was stored: the driver fills in its CKA
            # afterwards (sweep/late_similarity.py), its one field that may change; all else is the same
            new = json.loads(stored)
            assert isinstance(new.get("cka_vs_dense"), (float, type(None)))
            assert {**old, "cka_vs_dense": None} == {**new, "cka_vs_dense": None}
            continue
        assert stored == text
    assert found["trained_now"] == found["trials"] - len(before)
    plain_accs = {r["trial_id"]: r["final_test_acc"] for r in rows(tmp_path / "plain" / "deep").values()}
    assert {t: r["final_test_acc"] for t, r in after.items()} == plain_accs  # same trials, same results
    # a relaunch of the finished search runs nothing and prints what is stored: every trial, the verdicts
    capsys.readouterr()
    assert sweep_cli.main(argv) == 0
    again = capsys.readouterr().out
    [counts] = [line for line in again.splitlines() if line.startswith("trials: ")]
    assert sum(int(part.split()[0]) for part in counts[len("trials: "):].split(", ")) == len(after)
    assert "no ticket has a finished dense baseline" not in again and "wins(xi=0/1/std)" in again
