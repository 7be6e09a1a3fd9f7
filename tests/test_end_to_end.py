"""Slow end-to-end checks on real CIFAR-10 images (`make test-slow`); they print their figures."""

import time

import pytest

import layerlth.tickets.trial
from layerlth import run_trial

pytestmark = pytest.mark.slow


def test_algorithm1_on_cifar_subset_shares_one_dense_training(cifar_subset, monkeypatch):
    trainings = []

    class Counted(layerlth.tickets.trial.Run):  # every training a trial starts
        def __init__(self, *args, **kwargs):
            trainings.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(layerlth.tickets.trial, "Run", Counted)
    base = dict(kind="after_training", arch="resnet20", dataset=cifar_subset, recipe="he2016", epochs=4,
                train_subset=2048, p=2, score_batches=4, emissions=False)
    started = time.perf_counter()
    dense = run_trial(dict(base, kind="dense", p=0))
    rows = [run_trial(dict(base, criterion=c, rewind=r)) for c in ("kl", "hrank") for r in (0, 1)]
    total = time.perf_counter() - started
    assert len(trainings) == 5  # one dense + four tickets
    print(f"\ndense: acc {dense['final_test_acc']:.3f}, {dense['train_seconds']:.0f}s")
    for r in rows:
        print(f"{r['criterion']:<6} rewind {r['rewind']}: removed {r['removed']} acc {r['final_test_acc']:.3f} "
              f"cka {r['cka_vs_dense']:.3f} {r['train_seconds']:.0f}s")
    print(f"total {total:.0f}s; retraining dense per ticket would add {4 * dense['train_seconds']:.0f}s")
    assert dense["final_test_acc"] > 0.2 and all(r["final_test_acc"] > 0.2 for r in rows)


def test_resnet20_learns_on_the_full_cifar_subset(cifar_subset):
    result = run_trial(dict(arch="resnet20", dataset=cifar_subset, recipe="he2016", epochs=15, emissions=False))
    print(f"\nresnet20, 15 epochs on 5170 images: test acc {result['final_test_acc']:.3f}")
    assert result["final_test_acc"] > 0.5
