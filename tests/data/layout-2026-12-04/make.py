"""Writes a trial record, a Tune checkpoint and a ticket's weights with the layout of main at 6e079c0."""
import io
import json
import sys
from pathlib import Path

import torch
from layerlth.sweep.trial_state import checkpoint_state, ticket_weights

from layerlth import TrialConfig, run_trial

out = Path(sys.argv[1])
config = TrialConfig(kind="at_init", arch="cifar_resnet14", dataset="digits", criterion="grasp", p=1, recipe="he2016",
                     epochs=2, train_subset=64, batch_size=32, score_batches=1, score_batch_size=32, emissions=False,
                     device="cpu", dense_dir=str(out / "dense-tmp"), min_per_stage=1)
saved = {}
def keep(state):
    if state.metrics and state.epoch == 1:
        saved["state"] = io.BytesIO()  # written now: the history list goes on growing
        torch.save(checkpoint_state(state, config, [0]), saved["state"])
    if state.metrics and state.epoch == 2:
        saved["weights"] = ticket_weights(state, config)
row = run_trial(config, callbacks=[keep])
(out / "state.pt").write_bytes(saved["state"].getvalue())
(out / "weights.pt").write_bytes(saved["weights"])
(out / "result.json").write_text(json.dumps(json.loads(json.dumps(row, default=str)), indent=2))
print(config.hash(), row["removed"], row["final_test_acc"])
