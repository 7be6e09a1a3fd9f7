"""The demo: a dense ResNet-32 and its GraSP and SNIP layer tickets on scikit-learn's digits
(real, offline), trained the same way, compared in one table."""

from layerlth.config import TrialConfig
from layerlth.trial import run_trial

ROWS = (("dense", "grasp", 0), ("GraSP ticket", "grasp", 3), ("SNIP ticket", "snip", 3))


def table(results):
    header = f"{'model':<14}{'removed':>8}{'test acc':>10}{'params':>10}{'MACs':>9}{'train s':>9}{'CO2 g':>10}"
    lines = [header, "-" * len(header)]
    for name, r in results:
        lines.append(
            f"{name:<14}{len(r['removed']):>8}{r['final_test_acc']:>10.2%}{r['params'] / 1e3:>9.1f}k"
            f"{r['macs'] / 1e6:>8.2f}M{r['train_seconds']:>9.1f}{r['co2_kg'] * 1e3:>10.4f}"
        )
    lines.append(f"energy: {results[0][1]['emissions_method']} (country {results[0][1]['country']})")
    return "\n".join(lines)


def main(epochs=15, arch="resnet32", seed=0):
    results = []
    for name, criterion, p in ROWS:
        config = TrialConfig(arch=arch, dataset="digits", criterion=criterion, p=p,
                             recipe="he2016", epochs=epochs, seed=seed)
        results.append((name, run_trial(config)))
    print(table(results))
    return results
