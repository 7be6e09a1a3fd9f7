"""Files written before the package layout changed still load: a trial record, a Tune checkpoint and
a finished ticket's weights, written by main at 6e079c0 (tests/data/layout-2026-12-04/make.py, run
with that tree on the path). Checkpoints hold only tensors and plain data, so no module path is in
them; this keeps it so."""

import json
from pathlib import Path

from layerlth import TrialConfig, run_trial
from layerlth.analysis.results import load_rows
from layerlth.training.checkpoints import load_state

OLD = Path(__file__).parent / "data" / "layout-2026-12-04"


def old_config(tmp_path):
    record = json.loads((OLD / "result.json").read_text())
    values = {k: v for k, v in record.items() if k in TrialConfig.__dataclass_fields__} | {"dense_dir": str(tmp_path / "dense"),
                                                                          "device": "cpu"}
    return record, TrialConfig.from_dict(values)


def test_an_old_record_reads_back_with_its_hash(tmp_path):
    record, config = old_config(tmp_path)
    assert config.hash() == record["trial_id"] == "ba590e54119c"
    [row] = load_rows([OLD / "result.json"])
    assert row["removed"] == ["stage1.block2"] and row["status"] == "finished"


def test_an_old_checkpoint_resumes_and_old_ticket_weights_load(tmp_path):
    record, config = old_config(tmp_path)
    state = load_state(OLD / "state.pt", config)
    assert state["epoch"] == 1 and state["context"]["removed"] == record["removed"]
    row = run_trial(config, resume=state)
    assert row["resumed_from_epoch"] == 1 and len(row["history"]) == 2
    assert row["history"][0] == record["history"][0]  # the first epoch comes from the old checkpoint
    weights = load_state(OLD / "weights.pt", config)
    assert weights["epoch"] == 2 and sum(p.numel() for p in weights["model"].parameters()) == record["params"]
