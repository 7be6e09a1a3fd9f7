"""What a depth search found and what it cost, beside the exhaustive grid over the same range: printed
after a search, stored as `searches.json` in the sweep's folder, priced by `--dry-run` beforehand."""

import statistics

from layerlth.search.core import next_points
from layerlth.sweep.jobs import flops_duration

ASSUMED_TFLOPS = 4.0  # as `sweeps/run.py --dry-run`'s default: no GPU throughput has been measured


def _gpu_hours(configs, tflops=ASSUMED_TFLOPS):
    seconds = flops_duration(tflops)  # the dry run's own per-trial estimate
    return sum(seconds(c) for c in configs) / 3600


def grid_configs(search):
    """The exhaustive grid over the search's range: every p at every seed, and the dense runs."""
    return search.round_configs(range(search.low, search.high + 1), first=True)


def points_visited(search, p_star):
    """The p values a search evaluates when the truth is monotone with p* (low - 1: none wins)."""
    outcomes = {}
    while points := next_points(search, outcomes):
        outcomes |= {p: p <= p_star for p in points}
    return sorted(outcomes)


def price(search):
    """Trials of the search in the worst case and on average over every p* in its range (each as
    likely), against the grid's; GPU-hours at the assumed TFLOP/s likewise."""
    seeds = len(search.seeds)
    visits = [points_visited(search, p_star) for p_star in range(search.low - 1, search.high + 1)]
    grid = grid_configs(search)
    hours = [_gpu_hours(search.round_configs(v, first=True)) for v in visits]
    return {"grid_trials": len(grid), "worst_trials": seeds * (1 + max(map(len, visits))),
            "expected_trials": seeds * (1 + statistics.fmean(map(len, visits))),
            "grid_gpu_hours": _gpu_hours(grid), "worst_gpu_hours": max(hours),
            "expected_gpu_hours": statistics.fmean(hours)}


def price_table(search_list):
    lines = [f"{len(search_list)} depth searches (trials: worst case / expected over p* / exhaustive grid; "
             f"GPU-hours at an assumed {ASSUMED_TFLOPS:g} TFLOP/s):"]
    totals = dict.fromkeys(("worst_trials", "expected_trials", "grid_trials", "expected_gpu_hours",
                            "grid_gpu_hours"), 0.0)
    for search in search_list:
        cost = price(search)
        for key in totals:
            totals[key] += cost[key]
        lines.append(f"  {search.label}: p {search.low}..{search.high}, {len(search.seeds)} seeds: "
                     f"{cost['worst_trials']} / {cost['expected_trials']:.1f} / {cost['grid_trials']} trials, "
                     f"{cost['expected_gpu_hours']:.1f} vs {cost['grid_gpu_hours']:.1f} GPU-hours "
                     f"({cost['expected_gpu_hours'] / cost['grid_gpu_hours']:.0%} of the grid)")
    if len(search_list) > 1:
        lines.append(f"  all: {totals['worst_trials']:.0f} / {totals['expected_trials']:.1f} / "
                     f"{totals['grid_trials']:.0f} trials, {totals['expected_gpu_hours']:.1f} vs "
                     f"{totals['grid_gpu_hours']:.1f} GPU-hours "
                     f"({totals['expected_gpu_hours'] / totals['grid_gpu_hours']:.0%} of the grid)")
    return "\n".join(lines)


def with_cost(search, found):
    """The summary with the GPU-hours of the trials it asked for and of the grid, at the assumed TFLOP/s."""
    asked = [c for i, points in enumerate(found["rounds"]) for c in search.round_configs(points, i == 0)]
    return found | {"gpu_hours": _gpu_hours(asked), "grid_gpu_hours": _gpu_hours(grid_configs(search)),
                    "assumed_tflops": ASSUMED_TFLOPS}


def format_summary(found):
    def point(at):
        if not at:
            return "not evaluated"
        cut = f"{at['macs_reduction']:.1%} fewer MACs" if at["macs_reduction"] is not None else "MACs n/a"
        diff = f"{at['diff_points']:+.2f} points" if at["diff_points"] is not None else f"lost ({at['stopped']})"
        return f"p={at['p']}: {diff} vs dense, {cut}"

    p_star = found["p_star"] if found["p_star"] is not None else f"none (no p >= {found['range'][0]} wins)"
    lines = [f"{found['search']}: p* = {p_star} under {found['rule']}",
             f"  at p*: {point(found['at_p_star'])}; above: {point(found['above_p_star'])}",
             "  visited " + ", ".join(f"p={p} {'win' if won else 'loss'}" for p, won in found["visited"].items()),
             f"  {found['trials']} trials ({found.get('trained_now', found['trials'])} trained now), "
             f"{found['epochs']} epochs; the grid over {found['range'][0]}..{found['range'][1]}: "
             f"{found['grid_trials']} trials"
             + (f"; {found['gpu_hours']:.2f} vs {found['grid_gpu_hours']:.2f} GPU-hours at an assumed "
                f"{found['assumed_tflops']:g} TFLOP/s" if "gpu_hours" in found else "")]
    if found["contradictions"]:
        lines.append(f"  not monotone: p={found['contradictions']} won above the loss at p={found['above_p_star']['p']}; "
                     f"p* counts only the wins below every loss")
    return "\n".join(lines)


def save_summaries(store, summaries):
    store.storage.write_json("searches.json", summaries)
