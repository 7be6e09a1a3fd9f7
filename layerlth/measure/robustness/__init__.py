"""Robustness of trained nets: common corruptions (CIFAR-10-C or generated), CIFAR-10.2, FGSM/PGD."""

from layerlth.measure.robustness.evaluate import (
    KINDS,
    check_robustness,
    prepare_robustness,
    robustness_columns,
)

__all__ = ["KINDS", "check_robustness", "prepare_robustness", "robustness_columns"]
