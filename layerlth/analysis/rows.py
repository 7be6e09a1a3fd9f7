"""Result rows for analysis: read from a sweep or result files, cleaned, and grouped the way
`layerlth.tickets.verdict` compares them (a ticket setting against the dense runs of its setting)."""

import math
from pathlib import Path

from layerlth.analysis.results import clean, load_rows
from layerlth.foundations.config import TrialConfig
from layerlth.foundations.recipes import training_recipe
from layerlth.tickets.verdict import BASELINE, TICKET, finished, is_dense, value  # noqa: F401 (re-exported)


def read_rows(paths):
    """Rows of sweep directories, folders of sweeps, trials/, result files or results tables, as
    `layerlth verdict` takes them (`results.load_rows`), cleaned."""
    return [clean(row) for row in load_rows(paths)]


def baseline_key(row):
    return tuple(row.get(n) for n in BASELINE)


def ticket_key(row):
    return tuple(value(row, n) for n in TICKET)


def dense_groups(rows):
    """{baseline key: finished dense rows}."""
    groups = {}
    for row in finished(rows):
        if is_dense(row):
            groups.setdefault(baseline_key(row), []).append(row)
    return groups


def ticket_groups(rows):
    """{ticket key: finished ticket rows}, in a stable order."""
    groups = {}
    for row in finished(rows):
        if not is_dense(row):
            groups.setdefault(ticket_key(row), []).append(row)
    return dict(sorted(groups.items(), key=lambda item: tuple(map(str, item[0]))))


def setting(key):
    """Short label of a baseline key: `resnet32 cifar10, paper recipe, 200 epochs`."""
    values = dict(zip(BASELINE, key))
    data = Path(str(values["dataset"])).stem if "/" in str(values["dataset"]) else values["dataset"]
    text = f"{values['arch']} {data}, {values['recipe']} recipe"
    if values.get("epochs"):
        text += f", {values['epochs']} epochs"
    if values.get("shortcut") not in (None, "B"):
        text += f", shortcut {values['shortcut']}"
    if values.get("train_subset"):
        text += f", {values['train_subset']} train images"
    return text


def epochs_of(row):
    """Epochs the dense run trains (the recipe's, or the override)."""
    known = {k: row[k] for k in ("recipe", "epochs", "batch_size", "lr") if k in row}
    return training_recipe(TrialConfig(**known)).epochs


def stats(values):
    """(mean, std or None when fewer than two values, n) of the values that are not None."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None, 1
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, std, len(values)
