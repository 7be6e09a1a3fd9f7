"""A full disk under a real (local) Ray driver: it says what was not stored, stops cleanly, and a
relaunch records every trial."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import run as sweep_cli  # noqa: E402
from test_hardening import full_disk  # noqa: E402

FULL = """
name: full
defaults: {dataset: digits, arch: resnet20, recipe: he2016, epochs: 1, score_batches: 1, emissions: false,
           train_subset: 64, kind: at_init, p: 1}
studies:
  - {criterion: snip, _test_fail: always}
  - {criterion: grasp}
"""


@pytest.mark.slow  # three Ray trial workers, about 35 s on 2 shared cores
def test_full_disk_stops_the_driver_cleanly_and_loses_no_record(ray_session, tmp_path, monkeypatch, capsys):
    grid = tmp_path / "full.yaml"
    grid.write_text(FULL)
    argv = ["--grid", str(grid), "--storage", str(tmp_path / "store"), "--no-wandb", "--max-failures", "0",
            "--max-concurrent", "1"]
    root = tmp_path / "store" / "full"
    with monkeypatch.context() as patch:
        full_disk(patch)  # the driver's writes fail; the trial workers' are their own processes
        assert sweep_cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "the sweep stopped: writing to" in err and "(errored): [Errno 28] No space left on device" in err, err
    assert "--resume" in err and "Traceback" not in err
    assert not [p for p in root.rglob(".result.json.*")] and not (root / "results.csv").exists()
    for path in root.glob("trials/*/result.json"):  # whatever a worker stored is whole
        assert json.loads(path.read_text())["status"] == "finished"

    assert sweep_cli.main([*argv, "--resume"]) == 1  # space again: the errored trial is recorded now
    records = [json.loads(p.read_text()) for p in root.glob("trials/*/result.json")]
    assert sorted((r["criterion"], r["status"]) for r in records) == [("grasp", "finished"), ("snip", "errored")]
    assert "test failure (always)" in next(r["error"] for r in records if r["status"] == "errored")
