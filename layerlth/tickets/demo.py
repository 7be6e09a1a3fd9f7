"""`layerlth demo`: a dense ResNet-32 and its GraSP and SNIP layer tickets on scikit-learn's
digits (real, offline), trained the same way, in one process without Ray. `make demo` runs the
same kind of study as a Ray sweep (sweeps/grids/demo.yaml)."""

from layerlth.analysis.summary import trial_table
from layerlth.foundations.config import TrialConfig
from layerlth.tickets.trial import run_trial

ROWS = (("grasp", 0), ("grasp", 3), ("snip", 3))


def main(epochs=15, arch="resnet32", seed=0):
    results = [
        run_trial(TrialConfig(arch=arch, dataset="digits", criterion=criterion, p=p, recipe="he2016",
                              epochs=epochs, seed=seed))
        for criterion, p in ROWS
    ]
    print(trial_table(results))
    return results
