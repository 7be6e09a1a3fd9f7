"""Robustness of a trained model, as result-row columns plus a nested detail for result.json.

- cifar10c: accuracy under the 19 common corruptions at severities 1..5; the row's `acc_cifar10c`
  is the mean over the 15 standard corruptions x 5 severities (the usual headline), and
  `cifar10c_source` says whether the CIFAR-10-C archive or generated corruptions were used.
- cifar102: accuracy on CIFAR-10.2's 2,000 re-collected test images (CIFAR-10 models only).
- fgsm, pgd: accuracy under L-inf attacks, their settings recorded beside the numbers.

A failing part (a missing archive mid-sweep, out of memory) leaves its columns None and its error in
`robustness_error`; the trained result is kept.
"""

import logging
import statistics
import time
from pathlib import Path

import torch

from layerlth.data import default_root, load_dataset
from layerlth.measure.robustness import archives, corruptions
from layerlth.measure.robustness.attacks import adversarial_accuracy, settings_from
from layerlth.training.loop import evaluate

log = logging.getLogger("layerlth")
KINDS = ("cifar10c", "cifar102", "fgsm", "pgd")
SOURCES = ("auto", "archive", "generated")
ATTACKS = ("fgsm", "pgd")
BATCH = 1000


def check_robustness(config):
    """Every check of the robustness options that needs no data; ValueError naming the bad value."""
    unknown = [k for k in config.robustness if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown robustness {unknown}; allowed: {list(KINDS)}")
    if config.corruption_source not in SOURCES:
        raise ValueError(f"unknown corruption_source {config.corruption_source!r}; allowed: {list(SOURCES)}")
    if "cifar10c" in config.robustness and corruption_source(config) == "archive" and config.dataset != "cifar10":
        raise ValueError(f"corruption_source 'archive' is CIFAR-10-C, for models trained on cifar10, not "
                         f"{config.dataset!r}; use 'generated' (or 'auto')")
    if "cifar102" in config.robustness and config.dataset != "cifar10":
        raise ValueError(f"robustness 'cifar102' is a re-collected CIFAR-10 test set, for models trained on "
                         f"cifar10, not {config.dataset!r}")
    if config.corruption_images < 1:
        raise ValueError(f"corruption_images must be >= 1, got {config.corruption_images}")
    settings_from(config)  # checks eps, step size, steps, images


def corruption_source(config):
    if config.corruption_source == "auto":
        return "archive" if config.dataset == "cifar10" else "generated"
    return config.corruption_source


def _root(config):
    return Path(config.data_dir or default_root())


def corruption_set(config, data):
    if corruption_source(config) == "archive":
        return corruptions.CorruptionSet(archives.cifar10c_dir(_root(config)), "archive")
    return corruptions.generated(data, config.corruption_images, _root(config))


def prepare_robustness(config, data=None):
    """Download, check or generate the data `config.robustness` needs (before a sweep starts)."""
    if "cifar10c" in config.robustness:
        if corruption_source(config) == "archive":
            archives.cifar10c_dir(_root(config))
        else:
            corruption_set(config, data or load_dataset(config.dataset, config.data_dir))
    if "cifar102" in config.robustness:
        archives.cifar102(_root(config))


def _batches(x, y, mean, std):
    """Normalised (inputs, labels) as `layerlth.data.Batches` makes them, from uint8 NCHW images."""
    mean, std = mean.to(x.device)[:, None, None], std.to(x.device)[:, None, None]
    for start in range(0, len(x), BATCH):
        yield (x[start : start + BATCH].float() - mean) / std, y[start : start + BATCH]


def accuracy(model, x, y, data, amp=False):
    return evaluate(model, _batches(x, y, *data.channel_stats), amp)[1]


def _mean(values):
    return statistics.fmean(values)


def corruption_accuracy(model, corruption_set, data, amp=False):
    """Accuracy per corruption and severity, their means, and the clean accuracy on the same images."""
    device = data.test_x.device
    table = {}
    for name in corruptions.ALL:
        table[name] = {}
        for severity in corruptions.SEVERITIES:
            images, labels = corruption_set.images(name, severity)
            x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2)
            table[name][str(severity)] = accuracy(model, x, torch.from_numpy(labels).to(device).long(), data, amp)
        table[name]["mean"] = _mean(table[name][str(s)] for s in corruptions.SEVERITIES)
    n = corruption_set.per_severity
    return {
        "source": corruption_set.source, "images": n,
        "clean_acc": accuracy(model, data.test_x[:n], data.test_y[:n], data, amp),
        "mean_standard": _mean(table[c]["mean"] for c in corruptions.STANDARD),
        "mean_extra": _mean(table[c]["mean"] for c in corruptions.EXTRA),
        "mean_all": _mean(table[c]["mean"] for c in corruptions.ALL),
        "severities": {str(s): _mean(table[c][str(s)] for c in corruptions.STANDARD) for s in corruptions.SEVERITIES},
        "corruptions": table,
    }


def cifar102_accuracy(model, data, root, amp=False):
    x, y = archives.cifar102(root)
    device = data.test_x.device
    return {"images": len(y), "acc": accuracy(model, x.to(device), y.to(device), data, amp)}


def _cifar10c(config, model, data, amp):
    found = corruption_accuracy(model, corruption_set(config, data), data, amp)
    return {"acc_cifar10c": found["mean_standard"], "cifar10c_source": found["source"]}, found


def _cifar102(config, model, data, amp):
    found = cifar102_accuracy(model, data, _root(config), amp)
    return {"acc_cifar102": found["acc"]}, found


def _attacks(config, model, data, amp):
    names, settings = [k for k in ATTACKS if k in config.robustness], settings_from(config)
    found = adversarial_accuracy(model, data, names, settings, config.seed)
    columns = {f"acc_{name}": found[name] for name in names} | {"attack_clean_acc": found["clean"]}
    return columns | settings.row(), found | settings.row()


PARTS = {"cifar10c": _cifar10c, "cifar102": _cifar102, "attacks": _attacks}


def robustness_columns(config, model, data, device):
    """The row's robustness columns for `model` (trained, on `device`, with `data` there); {} when
    `config.robustness` is empty."""
    if not config.robustness:
        return {}
    started = time.perf_counter()
    amp = config.amp and torch.device(device).type == "cuda"
    row = {"acc_cifar10c": None, "cifar10c_source": None, "acc_cifar102": None, "acc_fgsm": None,
           "acc_pgd": None, "attack_clean_acc": None}
    detail, errors = {}, []
    wanted = {"attacks" if k in ATTACKS else k for k in config.robustness}
    for part in (p for p in PARTS if p in wanted):
        try:
            columns, detail[part] = PARTS[part](config, model, data, amp)
            row |= columns
        except Exception as error:  # reported in the row; the trained result stays
            log.exception("robustness %s failed", part)
            errors.append(f"{part}: {type(error).__name__}: {error}")
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()  # after an out-of-memory, let the next part try
    return row | {"robustness_error": "; ".join(errors) or None,
                  "robustness_seconds": time.perf_counter() - started, "robustness": detail}
