"""A sweep's depth searches in its report: the table of what each found (from `searches.json`, which
the sweep writes) and the figure of each search's visited points."""

import json
from pathlib import Path


def load_searches(paths):
    """The search summaries of the sweep directories among `paths` (none: [])."""
    found = []
    for path in map(Path, paths):
        if (path / "searches.json").is_file():
            found += json.loads((path / "searches.json").read_text())
    return found


def _at(point):
    if not point:
        return "-"
    cut = f"{point['macs_reduction']:.1%}" if point.get("macs_reduction") is not None else "-"
    diff = f"{point['diff_points']:+.2f}" if point.get("diff_points") is not None else "lost early"
    return f"p={point['p']}: {diff} / {cut}"


def markdown(found_list):
    lines = ["**Depth search.** The largest p whose ticket still wins (p\\*), found in rounds; "
             "accuracy difference (points) / MACs cut at p\\* and at p\\*+1", "",
             "| search | rule | seeds | p* | at p* | above p* | visited (win +, loss -) | trials | epochs | "
             "grid trials | grid epochs |", "|" + "---|" * 11]
    for f in found_list:
        visited = " ".join(f"{p}{'+' if won else '-'}" for p, won in f["visited"].items())
        star = f["p_star"] if f["p_star"] is not None else "none"
        lines.append(f"| {f['search']} | {f['rule']} | {len(f['seeds'])} | {star} | {_at(f['at_p_star'])} | "
                     f"{_at(f['above_p_star'])} | {visited} | {f['trials']} | {f['epochs']} | {f['grid_trials']} | "
                     f"{f.get('grid_epochs', '-')} |")
    notes = [f"{f['search']}: not monotone, wins above a loss at p={f['contradictions']}" for f in found_list
             if f["contradictions"]]
    return "\n".join(lines + [""] + [f"_{n}_" for n in notes])
