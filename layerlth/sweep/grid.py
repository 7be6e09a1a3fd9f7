"""A study as a YAML grid: defaults plus a list of studies, each expanded as the cartesian product
of its list-valued fields into trial configs, all validated before anything runs.

    name: demo
    defaults: {dataset: digits, recipe: he2016, epochs: 4, seed: [0, 1]}
    studies:
      - {kind: dense, arch: resnet20}
      - {kind: at_init, arch: resnet20, criterion: [grasp, snip], p: [1, 2]}

Keys are `TrialConfig` fields (see `layerlth ticket --help`). A list expands; a tuple-valued field
(rewind_epochs, checkpoint_epochs) takes a list as its value, and a list of lists to expand.
Each value's type and range are checked (`layerlth.foundations.field_checks`); a key written twice in one
mapping and an explicit null are errors rather than silently meaning something. A grid's problems are
named all at once, one line each, a misspelt key or name with the nearest allowed one.
"""

import itertools
import os
import re
from dataclasses import fields
from pathlib import Path

import yaml

from layerlth.data import DatasetUnavailable, load_dataset
from layerlth.foundations.config import TrialConfig
from layerlth.foundations.field_checks import checked_values, hinted, is_tuple
from layerlth.measure.robustness import prepare_robustness
from layerlth.tickets.validate import name_problems, validate

GRIDS = Path(__file__).resolve().parents[2] / "sweeps" / "grids"
_TUPLES = {f.name for f in fields(TrialConfig) if is_tuple(f)}
_KNOWN = {f.name for f in fields(TrialConfig)}
_RECIPE_OVERRIDES = ("epochs", "batch_size", "lr")


class GridError(ValueError):
    """A grid that cannot run; the message names the entry."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def builtin_grids():
    """Names of the built-in grids: the `*.yaml` files in `sweeps/grids/`, as `--grid` takes them."""
    return sorted(p.stem for p in GRIDS.glob("*.yaml"))


def grid_path(name_or_path):
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise GridError(f"grid file {path} does not exist")
        return path
    known = sorted(p.stem for p in GRIDS.glob("*.yaml"))
    if name_or_path not in known:
        raise GridError(f"unknown grid {name_or_path!r}; built-in grids: {known}, or a path to a .yaml file")
    return GRIDS / f"{name_or_path}.yaml"


def load_grid(name_or_path):
    path = grid_path(name_or_path)
    try:
        grid = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        raise GridError(f"{path}: not valid YAML: {error}") from error
    lists = [grid.get(k) for k in ("studies", "searches")] if isinstance(grid, dict) else [None]
    if any(v is not None and not isinstance(v, list) for v in lists) or not any(lists):
        raise GridError(f"{path}: a grid needs a non-empty 'studies' or 'searches' list (and optional 'name', "
                        f"'defaults')")
    unknown = sorted(set(grid) - {"name", "defaults", "studies", "searches", "description"})
    if unknown:
        raise GridError(f"{path}: unknown top-level keys {unknown}; allowed: name, description, defaults, "
                        f"studies, searches")
    grid.setdefault("name", path.stem)
    grid.setdefault("studies", [])
    grid.setdefault("searches", [])
    for entry in [grid.get("defaults")] + grid["studies"] + grid["searches"]:
        if isinstance(entry, dict) and isinstance(entry.get("dataset"), str):
            entry["dataset"] = dataset_from_environment(path, entry["dataset"])
    return grid


def dataset_from_environment(path, value):
    """`dataset: ${IMAGENET}`: a grid shared between machines names its data by an environment
    variable, set where it runs; one that is not set is named before anything starts."""
    if "$" not in value:
        return value
    expanded = os.path.expandvars(value)
    if "$" in expanded:
        names = re.findall(r"\$\{?(\w+)", expanded)
        raise GridError(f"{path}: dataset {value!r} names the environment variable {names[0]}, which is not set; "
                        f"export {names[0]}=<the dataset's folder or shards> (docs/imagenet.md)")
    return expanded


TEST_SWITCH = "_test_fail"  # test-only study key: "once" or "always" makes its trials fail


class _Problems:
    """A grid's problems, each said once (a bad default would fail every trial it reaches), all raised
    together as one GridError, one line each."""

    def __init__(self):
        self.lines = {}

    def add(self, line, key=None):
        self.lines.setdefault(key or line, line)

    def raise_any(self):
        lines = list(self.lines.values())
        if len(lines) > 1:
            listed = "\n".join(f"  {line}" for line in lines)
            raise GridError(f"{len(lines)} problems in the grid:\n{listed}")
        if lines:
            raise GridError(lines[0])


def _axes(entry, where, extra=()):
    """{field: [values]} of a grid entry (defaults, a study, a search); GridError naming every bad key."""
    problems = _Problems()
    axes = _entry_axes(entry, where, problems, extra)
    problems.raise_any()
    return axes


def _entry_axes(entry, where, problems, extra=()):
    """`_axes` that adds its problems to `problems`, leaving out the keys it cannot use (None: no mapping)."""
    if not isinstance(entry, dict):
        problems.add(f"{where}: must be a mapping of trial fields, got {entry!r}")
        return None
    entry = {k: v for k, v in entry.items() if k not in (TEST_SWITCH, *extra)}
    unknown = sorted(set(entry) - _KNOWN)
    if unknown:
        problems.add(hinted(f"{where}: unknown fields {unknown}; allowed: {sorted(_KNOWN)}", unknown, _KNOWN))
    axes = {}
    for key, value in entry.items():
        if key in unknown:
            continue
        if value is None or (isinstance(value, list) and None in value):
            default = TrialConfig.__dataclass_fields__[key].default
            recipe = " (the recipe's value)" if key in _RECIPE_OVERRIDES else ""
            problems.add(f"{where}: {key}: null is not a value; leave {key} out to use its default, "
                         f"{default!r}{recipe}, or give a value")
            continue
        expands = isinstance(value, list) and (key not in _TUPLES or (value and isinstance(value[0], list)))
        axes[key] = value if expands else [value]
    return axes


def expand(grid):
    """[(where, TrialConfig)], every config validated; duplicates (same hash) kept once. A grid with
    problems raises one GridError naming each of them, before anything runs."""
    problems = _Problems()
    defaults = _entry_axes(grid.get("defaults") or {}, "defaults", problems) or {}
    whole = not problems.lines  # the cross-field checks only where every key could be read
    trials = {}
    for index, study in enumerate(grid["studies"]):
        where = f"studies[{index}]"
        before = len(problems.lines)
        axes = _entry_axes(study, where, problems)
        if axes is None:
            continue
        cross, axes = whole and len(problems.lines) == before, defaults | axes
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values))
            label = f"{where} ({', '.join(f'{k}={v}' for k, v in point.items() if k in study)})"
            config = _checked(point, study, label, problems, cross)
            if config is not None:
                trials.setdefault(config.hash(), (label, config))
    problems.raise_any()
    return list(trials.values())


def _checked(point, study, label, problems, cross):
    """The point's validated TrialConfig, or None with its problems added: every bad value (said where
    it is written: the study, or the defaults) and every unknown name; then, when there is none and
    `cross`, the first of the checks across fields."""
    _, bad = checked_values(TrialConfig, point)
    bad += name_problems({k: v for k, v in point.items() if k not in {key for key, _ in bad}})
    for key, error in bad:
        where = label if key in study else "defaults"
        problems.add(f"{where}: {error}", key=(where.split(" ")[0], key, str(error)))
    if bad or not cross:
        return None
    try:
        return validate(TrialConfig.from_dict(point))
    except (ValueError, TypeError, DatasetUnavailable) as error:  # the same in a study's every seed: once
        problems.add(f"{label}: {error}", key=(label.split(" ")[0], str(error)))
        return None


def failing_trials(grid):
    """{trial hash: "once" | "always"} for the trials of studies carrying the test-only switch."""
    failures = {}
    for study in grid["studies"]:
        if isinstance(study, dict) and study.get(TEST_SWITCH):
            for _, config in expand({"defaults": grid.get("defaults"), "studies": [study]}):
                failures[config.hash()] = study[TEST_SWITCH]
    return failures


def check_data(configs):
    """Load (downloading if needed) each dataset once, so a missing one stops the sweep here."""
    for dataset, data_dir in sorted({(c.dataset, c.data_dir) for c in configs}, key=str):
        try:
            load_dataset(dataset, data_dir)
        except (DatasetUnavailable, ValueError) as error:
            raise GridError(f"dataset {dataset!r}: {error}") from error
    check_robustness_data(configs)


def check_robustness_data(configs):
    """Download CIFAR-10-C / CIFAR-10.2 and generate corruptions once, before any trial needs them."""
    needs = {}
    for c in configs:
        data_parts = tuple(sorted(set(c.robustness) - {"fgsm", "pgd"}))  # attacks need no data of their own
        if data_parts:
            needs.setdefault((c.dataset, c.data_dir, c.corruption_source, c.corruption_images, data_parts), c)
    for config in needs.values():
        try:
            prepare_robustness(config)
        except (DatasetUnavailable, ValueError) as error:
            raise GridError(f"robustness {list(config.robustness)} of dataset {config.dataset!r}: {error}") from error
