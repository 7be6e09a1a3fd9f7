"""The depth-search view: a search's accuracy difference vs p, the points it visited marked win or
loss, p* shown; with an exhaustive grid of the same setting, its every p beside them."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def depth_figure(found_list, grid_diffs=None):
    """`found_list`: summaries as in `searches.json`; `grid_diffs`: {search label: {p: diff points}}."""
    fig, axes = plt.subplots(1, len(found_list), figsize=(5.2 * len(found_list), 3.8), squeeze=False)
    for ax, found in zip(axes[0], found_list):
        grid = (grid_diffs or {}).get(found["search"]) or {}
        if grid:
            ps = sorted(grid)
            ax.plot(ps, [grid[p] for p in ps], color="0.7", marker=".", label="exhaustive grid")
        points = {int(p): won for p, won in found["visited"].items()}
        diffs = {int(p): d for p, d in (found.get("diffs") or {}).items()}
        for won, marker, colour, name in ((True, "o", "tab:green", "visited: wins"),
                                          (False, "x", "tab:red", "visited: loses")):
            ps = [p for p, w in sorted(points.items()) if w == won and diffs.get(p) is not None]
            ax.scatter(ps, [diffs[p] for p in ps], marker=marker, color=colour, s=60, zorder=3, label=name)
        for rank, p in enumerate(found["visit_order"], 1):
            if diffs.get(p) is not None:
                ax.annotate(str(rank), (p, diffs[p]), textcoords="offset points", xytext=(4, 6), fontsize=8)
        ax.axhline(0, color="black", lw=0.8)
        if found["p_star"] is not None:
            ax.axvline(found["p_star"], color="tab:blue", ls="--", label=f"p* = {found['p_star']}")
        ax.set_title(f"{found['arch']} {found['kind']} {found['criterion']} ({found['rule']})", fontsize=9)
        ax.set_xlabel("blocks removed p (numbers: order visited)")
        ax.set_ylabel("ticket - dense test accuracy (points)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
