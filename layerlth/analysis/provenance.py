"""Where a report's numbers come from: the grid, which trials finished, errored or are missing,
the hardware they ran on, how emissions were obtained, and the code and libraries."""

import platform
import subprocess
from collections import Counter
from importlib import metadata
from pathlib import Path

from layerlth.analysis.rows import is_dense, value
from layerlth.sweep.grid import GRIDS, expand, grid_path, load_grid

LIBRARIES = ("layerlth", "torch", "torchvision", "numpy", "ray", "wandb", "codecarbon", "matplotlib",
             "wandb-workspaces")
# what makes two trials the same experiment (paths and devices left out)
_IDENTITY = ("kind", "arch", "dataset", "shortcut", "criterion", "p", "rewind", "reinit", "rounds", "recipe",
             "epochs", "train_subset", "seed")


def identity(values):
    dense = is_dense(values)
    return tuple(
        "dense" if name == "kind" and dense
        else None if dense and name in ("criterion", "rewind", "reinit", "rounds")
        else None if name == "rewind" and values.get("kind") != "after_training"
        else value(values, name)
        for name in _IDENTITY
    )


def describe(values):
    if is_dense(values):
        return f"{values['arch']} dense seed {values['seed']}"
    rewind = f" rewind {values['rewind']}" if values.get("kind") == "after_training" else ""
    rounds = f" k={value(values, 'rounds')}" if value(values, "rounds") != 1 else ""
    return (f"{values['arch']} {values['kind']} {values['criterion']} p={values['p']}{rewind}{rounds} "
            f"seed {values['seed']}")


def resolve_grid(grid, paths):
    """The grid to check the sweep against: the one given, else the built-in grid named like the
    sweep directory (results/sweeps/paper -> paper), else None."""
    if grid:
        return grid_path(grid)
    if len(paths) == 1 and Path(paths[0]).is_dir():
        candidate = GRIDS / f"{Path(paths[0]).resolve().name}.yaml"
        if candidate.is_file():
            return candidate
    return None


def missing_trials(grid_file, rows):
    """Descriptions of the grid's trials that have no row at all."""
    present = {identity(r) for r in rows}
    return [describe(c.to_dict()) for _, c in expand(load_grid(str(grid_file))) if identity(c.to_dict()) not in present]


def errored_trials(rows):
    out = []
    for row in rows:
        if row.get("status", "finished") != "finished":
            last = (str(row.get("error") or "no error text").strip().splitlines() or ["?"])[-1]
            out.append(f"{describe(row)}: {row.get('status')} ({last})")
    return out


def git_commit():
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    if commit.returncode:
        return "unknown (not a git checkout)"
    return commit.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def versions():
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def provenance(rows, grid_file):
    statuses = Counter(r.get("status", "finished") for r in rows)
    return {
        "grid": str(grid_file) if grid_file else "unknown (pass --grid to check for missing trials)",
        "grid_text": Path(grid_file).read_text() if grid_file else "",
        "trials": dict(sorted(statuses.items())),
        "missing": missing_trials(grid_file, rows) if grid_file else [],
        "errored": errored_trials(rows),
        "hardware": dict(Counter(f"{r.get('device_name') or '?'} ({r.get('device') or '?'})"
                                 for r in rows if r.get("status", "finished") == "finished")),
        "emissions": dict(Counter(str(r.get("emissions_method")) for r in rows
                                  if r.get("status", "finished") == "finished")),
        "memory": sorted({str(r["memory_method"]) for r in rows if r.get("memory_method")}),
        "git_commit": git_commit(),
        "versions": versions(),
        "report_machine": f"{platform.node()} ({platform.platform()}, Python {platform.python_version()})",
    }
