"""A bare GPU machine has torch and numpy but no Ray, W&B, codecarbon or torchattacks: `import
layerlth` and a trial with emissions off must not need them (they are imported where used)."""

import subprocess
import sys
from pathlib import Path

from hidden_modules import blocker

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ("ray", "wandb", "codecarbon", "torchattacks")
SCRIPT = blocker(HIDDEN) + f"""
import sys
import layerlth
from layerlth.tickets.trial import run_trial
row = run_trial(dict(dataset="digits", arch="resnet20", kind="at_init", criterion="grasp", p=1, epochs=1,
                     train_subset=64, score_batches=1, emissions=False, device="cpu", dense_dir=sys.argv[1]))
print(row["status"], row["emissions_method"], sorted(m for m in sys.modules if m.split(".")[0] in {HIDDEN!r}))
"""


def test_a_trial_runs_where_ray_wandb_codecarbon_and_torchattacks_are_missing(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "dense")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["finished", "disabled", "[]"]
