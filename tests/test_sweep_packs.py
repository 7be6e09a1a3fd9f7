"""`--trials-per-gpu 3` on a real (local) Ray, on a CPU: each Tune trial is a pack of up to 3 of the
sweep's trials, refilled as members leave; every trial's record, W&B run and energy once; a driver
killed mid-pack and relaunched with --resume loses nothing and trains nothing twice."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_sweep_ray import kill_driver_when, rows

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import run as sweep_cli  # noqa: E402

GRID = """
name: packed
defaults: {dataset: digits, arch: resnet20, recipe: he2016, epochs: 8, score_batches: 1, country: FRA}
studies:
  - {kind: dense, seed: [0, 1]}
  - {kind: at_init, criterion: grasp, p: [1, 2], seed: [0, 1]}
  - {kind: after_training, criterion: kl, p: 1}
"""
TRIALS = 7


def member_epochs(root):
    """{trial id: epoch of the checkpoint it keeps as a pack member}."""
    found = {}
    for path in (root / "checkpoints").glob("*/state.pt"):
        try:
            found[path.parent.name] = torch.load(path, map_location="cpu", weights_only=True)["epoch"]
        except Exception:  # noqa: BLE001 - a file being replaced: look again
            continue
    return found


def test_packed_sweep_records_everything_once_and_resumes_after_a_kill(ray_session, tmp_path, capsys):
    grid = tmp_path / "packed.yaml"
    grid.write_text(GRID)
    storage = tmp_path / "store"
    root = storage / "packed"
    argv = ["--grid", str(grid), "--storage", str(storage), "--wandb", "offline", "--trials-per-gpu", "3",
            "--max-concurrent", "1"]

    def mid_pack():  # a member finished, another is part-way through
        done = rows(root) if (root / "trials").is_dir() else {}
        part_way = {t: e for t, e in member_epochs(root).items() if t not in done and 2 <= e <= 6}
        return part_way if done and part_way else None

    part_way = kill_driver_when(argv, tmp_path, mid_pack, "a member finished and another is part-way")
    before = {t: (root / "trials" / t / "result.json").read_text() for t in rows(root)}
    interrupted = set(part_way) - set(before)
    assert interrupted and len(before) < TRIALS, (part_way, before.keys())

    capsys.readouterr()
    assert sweep_cli.main([*argv, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "packing up to 3 trials per Tune trial" in out
    assert f"resuming {root}: {TRIALS - len(before)} trials to run" in out
    after = rows(root)
    table = pd.read_csv(root / "results.csv")
    assert len(after) == TRIALS and sorted(table["trial_id"]) == sorted(after)  # every trial exactly once
    for trial_id, text in before.items():  # finished members were not rerun
        assert (root / "trials" / trial_id / "result.json").read_text() == text
    for trial_id in interrupted:  # interrupted members went on from their own checkpoint
        starts = after[trial_id]["attempt_start_epochs"]
        assert len(starts) == 2 and starts[0] == 0 and starts[1] >= part_way[trial_id], starts
        assert after[trial_id]["epochs_trained"] == 8
    for row in after.values():
        assert row["status"] == "finished" and row["pack_trial"]
        assert row["energy_kwh"] > 0 and row["country"] == "FRA" and "cpu:" in row["emissions_method"]
        assert row["energy_split"] == "alone" or row["energy_split"].startswith("images x MACs among up to")
        [log] = Path(row["wandb_run"]).parent.glob("*.wandb")  # its own W&B run, offline
        assert json.loads(json.dumps(row["trial_id"])).encode() in log.read_bytes()
    assert any(r["energy_split"] != "alone" for r in after.values())  # members did share a pack
    ticket = next(r for r in after.values() if r["kind"] == "after_training")
    assert 0 < ticket["cka_vs_dense"] <= 1  # its dense run was stored by a member of a pack

    capsys.readouterr()
    assert sweep_cli.main(argv) == 0  # relaunching reuses every stored trial
    assert f"{TRIALS} trials: {TRIALS} already finished, 0 to run" in capsys.readouterr().out


def test_trials_per_gpu_refuses_what_is_not_a_count_and_auto_is_one_on_a_cpu(capsys):
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exit:
            sweep_cli.parser().parse_args(["--grid", "demo", "--trials-per-gpu", bad])
        assert exit.value.code == 2 and f"{bad!r}: a whole number >= 1, or auto" in capsys.readouterr().err
    args = sweep_cli.parser().parse_args(["--grid", "demo", "--trials-per-gpu", "auto"])
    from layerlth.sweep.runner import resolve_trials_per_gpu

    assert resolve_trials_per_gpu(args, []) == 1  # nothing measured packs on this machine's kind


FUSED_GRID = """
name: fused
defaults: {dataset: digits, arch: resnet20, recipe: paper, epochs: 3, score_batches: 1}
studies:
  - {kind: dense, seed: [0, 1]}
  - {kind: at_init, criterion: grasp, p: [1, 2], seed: 0}
"""


def test_a_fused_packed_sweep_gives_the_rows_of_an_unfused_one(ray_session, tmp_path, capsys):
    grid = tmp_path / "fused.yaml"
    grid.write_text(FUSED_GRID)
    tables = {}
    for fuse in ("false", "true"):
        storage = tmp_path / f"store-{fuse}"
        argv = ["--grid", str(grid), "--storage", str(storage), "--wandb", "disabled", "--trials-per-gpu", "4",
                "--max-concurrent", "1", "--fuse", fuse]
        assert sweep_cli.main(argv) == 0
        tables[fuse] = rows(storage / "fused")
    plain, fused = tables["false"], tables["true"]
    assert sorted(plain) == sorted(fused) and len(plain) == 4  # the same trials, by the same hashes
    for trial_id, row in plain.items():
        other = fused[trial_id]
        assert other["removed"] == row["removed"] and other["scores"] == row["scores"]
        assert other["params"] == row["params"] and other["macs"] == row["macs"]  # ghosts never counted
        assert other["epochs_trained"] == row["epochs_trained"] == 3
        # fp32: grouped and separate convolutions round apart (oneDNN picks other kernels), and
        # training amplifies it; the float64 tests (test_fusion.py) show the same arithmetic to 1e-12
        first, again = row["history"][0]["train_loss"], other["history"][0]["train_loss"]
        assert abs(first - again) <= 0.01 * first
        assert [h["lr"] for h in row["history"]] == [h["lr"] for h in other["history"]]
        assert abs(other["final_test_acc"] - row["final_test_acc"]) <= 0.15
        assert row["training_path"] == "eager" and "fused_group_size" not in row
    assert {r["training_path"] for r in fused.values()} == {"fused_eager"}
    assert {r["fused_group_size"] for r in fused.values()} == {4}
    assert sorted(r["ghost_blocks"] for r in fused.values()) == [0, 0, 1, 2]
