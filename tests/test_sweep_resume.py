"""Resume on a real (local) Ray trusts nothing it reads back: planted pickles under tune/ and in the
checkpoints do not run, and the sweep still finishes; a ticket that finished before its dense run
gets its CKA once the dense run is stored."""

import json
import pickle
import sys
from pathlib import Path

import torch
from test_stored_files import Payload

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import run as sweep_cli  # noqa: E402

SMALL = """
name: small
defaults: {dataset: digits, arch: resnet20, recipe: he2016, epochs: 2, score_batches: 1, emissions: false,
           train_subset: 256}
studies:
  - {kind: dense}
  - {kind: at_init, criterion: grasp, p: 1}
"""


def records(root):
    return {r["trial_id"]: r for r in (json.loads(p.read_text()) for p in (root / "trials").glob("*/result.json"))}


def plant(path, marker):
    """Replace a file by a pickle that runs code when loaded: torch's format for .pt files."""
    if path.suffix == ".pt":
        torch.save({"state_dict": Payload(marker), "epoch": 10**6}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))


def test_resume_runs_no_planted_pickle_and_finishes(ray_session, tmp_path, capsys):
    grid = tmp_path / "small.yaml"
    grid.write_text(SMALL)
    root = tmp_path / "store" / "small"
    argv = ["--grid", str(grid), "--storage", str(tmp_path / "store"), "--no-wandb", "--max-concurrent", "1"]
    assert sweep_cli.main(argv) == 0
    first = records(root)
    [ticket] = [t for t, r in first.items() if r["kind"] == "at_init"]
    dense = next(t for t in first if t != ticket)
    # the ticket's record is lost (killed after its checkpoints); everything Ray wrote, every
    # checkpoint and the ticket's weights become pickles that run code when loaded
    (root / "trials" / ticket / "result.json").unlink()
    marker = tmp_path / "pwned"
    planted = [p for p in (root / "tune").rglob("*") if p.is_file()] + [root / "trials" / ticket / "weights.pt"]
    assert any(p.name == "state.pt" for p in planted) and any("experiment_state" in p.name for p in planted)
    for path in planted:
        plant(path, marker)
    pickle.loads(next(p for p in planted if p.suffix != ".pt").read_bytes())  # the payloads are live
    assert marker.exists()
    marker.unlink()

    capsys.readouterr()
    assert sweep_cli.main([*argv, "--resume"]) == 0
    out = capsys.readouterr().out
    assert not marker.exists()
    assert "2 trials: 1 already finished, 1 to run" in out and "1 of them from the newest checkpoint" in out
    after = records(root)
    assert sorted(after) == sorted(first)
    assert (root / "trials" / dense / "result.json").read_text() == json.dumps(first[dense], indent=2)
    resumed = after[ticket]
    # every checkpoint it left was refused (the worker logs each), so it trained again from the start
    assert resumed["status"] == "finished" and resumed["attempt_start_epochs"] == [0]
    assert resumed["removed"] == first[ticket]["removed"]
    assert resumed["history"][-1]["test_acc"] == first[ticket]["history"][-1]["test_acc"]


TICKETS_FIRST = """
name: later
defaults: {dataset: digits, arch: resnet20, recipe: he2016, epochs: 2, score_batches: 1, emissions: false,
           train_subset: 256}
studies:
  - {kind: at_init, criterion: [snip, grasp], p: 1}
"""


def test_every_ticket_row_gets_its_cka_once_the_dense_run_lands(ray_session, tmp_path, capsys):
    grid = tmp_path / "later.yaml"
    grid.write_text(TICKETS_FIRST)
    root = tmp_path / "store" / "later"
    argv = ["--grid", str(grid), "--storage", str(tmp_path / "store"), "--no-wandb", "--max-concurrent", "1"]
    assert sweep_cli.main(argv) == 0  # tickets only: no dense run to compare with yet
    early = records(root)
    assert len(early) == 2 and all(r["cka_vs_dense"] is None for r in early.values())
    assert all((root / "trials" / t / "weights.pt").is_file() for t in early)

    grid.write_text(TICKETS_FIRST + "  - {kind: dense}\n")  # the larger grid: its dense run lands now
    capsys.readouterr()
    assert sweep_cli.main(argv) == 0
    assert "cka_vs_dense filled in for 2 tickets" in capsys.readouterr().out
    rows = records(root)
    tickets = [r for r in rows.values() if r["kind"] == "at_init"]
    assert len(tickets) == 2 and all(0 < r["cka_vs_dense"] <= 1 for r in tickets)
    table = (root / "results.csv").read_text()
    assert "cka_vs_dense" in table.splitlines()[0]
