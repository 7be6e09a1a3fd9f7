"""A sweep whose trials each train on two Ray Train workers (gloo on the CPU): torchvision's
ResNet-50 on real images streamed from a folder, a dense run and a GraSP ticket, one of whose workers
is SIGKILLed after its first epoch; and the grids refused before anything runs."""

import sys
from pathlib import Path

import pytest
from test_streams import write_folder
from test_sweep_ray import rows

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import run as sweep_cli  # noqa: E402

GRID = """
name: wide
defaults: {{dataset: {folder}, arch: resnet50, recipe: he2016, epochs: 2, batch_size: 32, image_size: 64,
           score_batches: 1, score_batch_size: 16, data_workers: 0, workers: 2, emissions: false}}
studies:
  - {{kind: dense, emissions: true}}
  - {{kind: at_init, criterion: grasp, p: 1, _test_fail: kill_worker}}
"""


@pytest.fixture(scope="module")
def grid(cifar_fixture, tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    folder = write_folder(cifar_fixture, root / "images", train=256, val=64)
    path = root / "wide.yaml"
    path.write_text(GRID.format(folder=folder))
    return path


SHARDS_GRID = """
name: wide-shards
defaults: {{dataset: {shards}, arch: resnet50, recipe: he2016, epochs: 1, batch_size: 32, image_size: 64,
           score_batches: 1, score_batch_size: 16, data_workers: 2, workers: 2, emissions: false}}
studies:
  - {{kind: dense}}
  - {{kind: at_init, criterion: grasp, p: 1}}
"""


@pytest.mark.slow  # two ResNet-50 trials of one epoch on 2 workers each: about 2 minutes on 2 cores
def test_a_sweep_on_shards_trains_each_trial_on_two_workers(ray_session, grid, tmp_path):
    """The shards `layerlth shard` makes of a folder, read by two Ray Train workers with two
    DataLoader workers each: one record per trial (webdataset once refused to run under
    torch.distributed, failing every trial at once)."""
    from layerlth.cli import main

    shards = tmp_path / "shards"
    main(["shard", str(grid.parent / "images"), str(shards)])
    path = tmp_path / "wide-shards.yaml"
    path.write_text(SHARDS_GRID.format(shards=shards))
    storage = tmp_path / "store"
    assert sweep_cli.main(["--grid", str(path), "--storage", str(storage), "--no-wandb"]) == 0
    found = rows(storage / "wide-shards")
    assert len(found) == 2 and {r["status"] for r in found.values()} == {"finished"}
    for row in found.values():
        assert row["workers"] == 2 and row["data_source"] == "shards" and len(row["history"]) == 1
        assert row["images_skipped"] == 0


@pytest.mark.slow  # two ResNet-50 trials on 2 workers each, one restarted: about 3 minutes on 2 cores
def test_two_workers_train_each_trial_and_a_killed_worker_costs_one_epoch(ray_session, grid, tmp_path, capsys):
    from layerlth.cli import main

    storage = tmp_path / "store"
    assert sweep_cli.main(["--grid", str(grid), "--storage", str(storage), "--no-wandb"]) == 0
    root = storage / "wide"
    found = rows(root)
    assert len(found) == 2 and {r["status"] for r in found.values()} == {"finished"}
    dense, ticket = sorted(found.values(), key=lambda r: r["kind"] != "dense")
    for row in (dense, ticket):
        assert row["workers"] == 2 and row["worker_nodes"] == 1 and row["data_source"] == "folder"
        assert len(row["history"]) == 2 and row["arch"] == "resnet50"
    assert dense["energy_kwh"] > 0 and dense["energy_summed_over"].startswith("nodes")
    assert ticket["attempt_start_epochs"] == [0, 1]  # the group restarted from the epoch-1 checkpoint
    assert len(ticket["removed"]) == 1
    capsys.readouterr()
    main(["report", str(root), "--quiet"])
    assert (root / "report" / "report.html").is_file()


def test_more_workers_than_the_machine_holds_is_refused_before_ray(grid, tmp_path, capsys):
    code = sweep_cli.main(["--grid", str(grid), "--storage", str(tmp_path / "s"), "--no-wandb", "--workers", "64"])
    err = capsys.readouterr().err
    assert code == 2 and "workers=64" in err and "CPUs" in err and not (tmp_path / "s").exists()
    code = sweep_cli.main(["--grid", str(grid), "--storage", str(tmp_path / "s"), "--no-wandb", "--trials-per-gpu", "2"])
    assert code == 2 and "never packed" in capsys.readouterr().err
