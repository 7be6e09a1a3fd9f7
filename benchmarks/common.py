"""What every benchmark shares: side-by-side timing in alternating repetitions, ratios of adjacent
measurements summarised by their median and spread, the machine's description, markdown tables.

Shared machines are noisy, so absolute times mean little; a ratio of two variants measured one right
after the other, repeated in rotating order, is what the tables report.
"""

import argparse
import copy
import datetime
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without install

import torch  # noqa: E402

from layerlth.foundations.recipes import get_recipe  # noqa: E402
from layerlth.sweep.estimate import cpu_model  # noqa: E402
from layerlth.training import fastpath  # noqa: E402
from layerlth.training.loop import train  # noqa: E402


def alternate(variants, repeats):
    """Run each variant once per repetition, rotating the order so none always goes first.
    `variants` maps a name to a function returning (items, seconds); returns name -> [items/s]."""
    names = list(variants)
    rates = {name: [] for name in names}
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            items, seconds = variants[name]()
            rates[name].append(items / seconds)
    return rates


def ratios(rates, numerator, denominator):
    """Per-repetition ratios of two variants measured in the same repetition."""
    return [a / b for a, b in zip(rates[numerator], rates[denominator])]


def summary(values, digits=2):
    """'median (min-max)' of a list of measurements."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def layerlth_steps(model, data, steps, fast, batch=128, prepare=None):
    """A variant: `steps` training steps of a copy of `model` through layerlth's own loop
    (`layerlth.training.loop.train`, one short epoch), timed by the loop itself (evaluation excluded).
    `prepare` wraps the copy (e.g. torch.compile)."""
    model = copy.deepcopy(model)
    if prepare:
        model = prepare(model)
    recipe = get_recipe("paper").scaled(epochs=1, batch_size=batch)
    optimizer = recipe.optimizer(model)
    subset = data.subset(train=steps * batch, test=batch)  # evaluation is not timed; keep it short
    seeds = itertools.count()

    def run():
        history = train(model, subset, recipe, seed=next(seeds), amp=fast.amp, channels_last=fast.channels_last,
                        optimizer=optimizer)
        return steps * batch, history[-1]["epoch_seconds"]

    return run


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def machine():
    """One line naming where and when the figures were taken."""
    if torch.cuda.is_available():
        device = f"GPU {torch.cuda.get_device_name()}"
    else:
        device = f"CPU {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    fast = fastpath.choose("cuda" if torch.cuda.is_available() else "cpu")
    return (f"{device}; torch {torch.__version__}; fast path here: {fast.precision} + {fast.memory_format}; "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")


def today():
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def default_data():
    """The CIFAR-10 subset where `layerlth.data.subset` finds it, else where `make test-data` puts it
    (a missing file is then named by the dataset check, with how to make it)."""
    from layerlth.data import subset

    return str(subset.find_subset() or subset.places()[-1])


def parser(description, quick_help):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--repeats", type=int, help="repetitions of each variant (default: 3 quick, 5 full)")
    p.add_argument("--data", default=default_data(),
                   help="dataset: cifar10, or an .npz of CIFAR images (default: the CIFAR-10 subset, "
                        "found as the slow tests find it; `make test-data` makes it)")
    return p


def positive(name, value):
    if value < 1:
        raise SystemExit(f"{name} must be >= 1, got {value}")
    return value
