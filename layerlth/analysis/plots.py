"""The report's figures (matplotlib, PNG and PDF): accuracy difference vs p, test accuracy per
epoch, measured vs FLOPs-ideal speed-up, CO2 and energy per trial, which blocks each criterion
removes, and robustness. Each function returns a figure, or None when the rows hold nothing for it."""

from collections import Counter, defaultdict

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from layerlth.analysis.cells import MISSING  # noqa: E402
from layerlth.analysis.provenance import describe  # noqa: E402
from layerlth.analysis.rows import baseline_key, dense_groups, finished, is_dense, setting, stats, value  # noqa: E402

plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3,
                     "savefig.bbox": "tight", "figure.dpi": 110})


def _panels(count, width=5.0, height=3.6):
    fig, axes = plt.subplots(1, count, figsize=(width * count, height), squeeze=False)
    return fig, list(axes[0])


def _dense_std(rows):
    """{setting: std of the dense accuracy in points, None with one seed}."""
    return {setting(key): stats([100 * r["final_test_acc"] for r in group])[1]
            for key, group in dense_groups(rows).items()}


def diff_vs_p(table2, rows):
    """Table 2 as a figure: ticket - dense (points) vs p per criterion, dense +-1 std band."""
    settings = list(dict.fromkeys(r.setting for r in table2.rows))
    if not settings:
        return None
    band = _dense_std(rows)
    fig, axes = _panels(len(settings))
    for ax, name in zip(axes, settings):
        std = band.get(name)
        ps = [int(c[2:]) for c in table2.columns]
        if std is not None:
            ax.axhspan(-std, std, color="0.85", label=f"dense ±1 std ({std:.2f})")
        ax.axhline(0, color="k", lw=0.8, label=None if std is not None else "dense (one seed: no std band)")
        for row in (r for r in table2.rows if r.setting == name):
            points = [(p, row.cells.get(f"p={p}", MISSING)) for p in ps]
            points = [(p, c) for p, c in points if c.mean is not None]
            line = ax.errorbar([p for p, _ in points], [c.mean for _, c in points],
                               yerr=[c.std or 0 for _, c in points], marker="o", capsize=3, label=row.label)
            paper = [(p, c.paper) for p, c in points if c.paper is not None]
            if paper:
                ax.plot(*zip(*paper), ls=":", marker="s", mfc="none", color=line[0].get_color(),
                        label=f"{row.label} (paper)")
        ax.set(title=name, xlabel="p (blocks removed at initialisation)", ylabel="ticket − dense accuracy (points)",
               xticks=ps)
        ax.legend(fontsize=8)
    return fig


def _mean_curve(group):
    by_epoch = defaultdict(list)
    for row in group:
        for h in row.get("history") or []:
            by_epoch[h["epoch"]].append(100 * h["test_acc"])
    epochs = sorted(by_epoch)
    return epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]


def curves(rows):
    """Test accuracy per epoch: one panel per setting and kind of ticket, dense (mean over seeds) in
    black beside that kind's tickets, so a large sweep does not pile 40 curves into one plot."""
    rows = [r for r in finished(rows) if r.get("history")]
    panels = defaultdict(lambda: defaultdict(list))  # (setting, kind) -> label -> rows
    dense = defaultdict(list)
    for row in rows:
        if is_dense(row):
            dense[setting(baseline_key(row))].append(row)
        else:
            label = describe(row).split(" seed")[0].split(" ", 2)[2]  # "grasp p=1", "kl p=2 rewind 1"
            panels[(setting(baseline_key(row)), row["kind"])][label].append(row)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, ((name, kind), groups) in zip(axes[0], sorted(panels.items())):
        for label, group in [("dense", dense.get(name, []))] + sorted(groups.items()):
            if not group:
                continue
            epochs, accs = _mean_curve(group)
            seeds = f"{len(group)} seed{'s' if len(group) > 1 else ''}"
            ax.plot(epochs, accs, color="k" if label == "dense" else None, lw=2.2 if label == "dense" else 1.0,
                    marker="o" if len(epochs) < 12 else None, ms=3, label=f"{label} ({seeds})")
        ax.set(title=f"{name}\n{kind} tickets", xlabel="epoch", ylabel="test accuracy (%)")
        ax.title.set_fontsize(9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # below the axes: the curves fill the plot area
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    return fig


def speedup(table4):
    """Measured training speed-up vs the FLOPs-ideal one (dense MACs / ticket MACs), y = x line."""
    points = [(r, r.cells.get("ideal_speedup", MISSING), r.cells.get("speedup", MISSING)) for r in table4.rows]
    points = [(r, i, m) for r, i, m in points if i.mean is not None and m.mean is not None]
    if not points:
        return None
    fig, (ax,) = _panels(1, 5.5, 4.5)
    for name in dict.fromkeys(r.setting for r, _, _ in points):
        mine = [(r, i, m) for r, i, m in points if r.setting == name]
        ax.errorbar([i.mean for _, i, _ in mine], [m.mean for _, _, m in mine], yerr=[m.std or 0 for _, _, m in mine],
                    fmt="o", capsize=3, label=name)
        for r, i, m in mine:
            ax.annotate(r.label, (i.mean, m.mean), fontsize=7, xytext=(4, 3), textcoords="offset points")
    values = [v for _, i, m in points for v in (i.mean, m.mean)]
    low, high = min(values + [1.0]) * 0.95, max(values) * 1.05
    ax.plot([low, high], [low, high], "k--", lw=0.8, label="y = x (speed-up as FLOPs promise)")
    ax.set(xlabel="FLOPs-ideal speed-up (dense MACs / ticket MACs)", ylabel="measured training speed-up",
           title="Training speed-up of tickets at initialisation")
    ax.legend(fontsize=8)
    return fig


def emissions(rows):
    """CO2 (g) and energy (Wh) of every finished trial; hatched where a model estimated them."""
    rows = sorted((r for r in finished(rows) if r.get("co2_kg") is not None), key=describe)
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, max(2.6, 1.2 + 0.3 * len(rows))), sharey=True, layout="constrained")
    labels = [describe(r) for r in rows]
    hatch = ["//" if "estimated" in str(r.get("emissions_method")) else "" for r in rows]
    for ax, values, title in ((axes[0], [1e3 * r["co2_kg"] for r in rows], "CO2 (g)"),
                              (axes[1], [1e3 * (r.get("energy_kwh") or 0) for r in rows], "energy (Wh)")):
        bars = ax.barh(labels, values, color=["0.3" if is_dense(r) else "tab:green" for r in rows])
        for bar, h in zip(bars, hatch):
            bar.set_hatch(h)
            bar.set_edgecolor("white")
        ax.set(xlabel=title)
    axes[0].invert_yaxis()
    if any(hatch):
        fig.suptitle("hatched: estimated by codecarbon's model (no RAPL/NVML), not measured", fontsize=9)
    return fig


def removed_blocks(rows):
    """Block x criterion: the share of a criterion's trials (seeds) that removed each block; one-shot
    and iterative (k rounds) removal of the same criterion and p side by side."""
    from layerlth.foundations.arch_names import is_user
    from layerlth.models import build_model, removable_blocks

    counts = defaultdict(lambda: defaultdict(Counter))  # arch -> column -> {block: removals, "trials": n}
    for row in finished(rows):
        if is_dense(row) or row["kind"] == "filter" or not isinstance(row.get("removed"), list):
            continue
        column = (row["kind"] == "after_training", row["criterion"], row["p"], value(row, "rounds"))
        counts[row["arch"]][column].update(["trials", *row["removed"]])
    if not counts:
        return None
    fig, axes = _panels(len(counts), max(5.0, 1.5 + 0.45 * max(map(len, counts.values()))), 5.0)
    for ax, (arch, columns) in zip(axes, sorted(counts.items())):
        try:  # a user's module:callable named in a stored row is never imported: its rows list its blocks
            if is_user(arch):
                raise ValueError(arch)
            blocks = removable_blocks(build_model(arch))
        except ValueError:
            blocks = sorted({b for c in columns.values() for b in c if b != "trials"})
        keys = sorted(columns)  # at-init criteria first, then trained ones; p in numeric order, one shot first
        grid = [[columns[c].get(b, 0) / columns[c]["trials"] for c in keys] for b in blocks]
        image = ax.imshow(grid, cmap="Greens", vmin=0, vmax=1, aspect="auto")
        for y, line in enumerate(grid):
            for x, share in enumerate(line):
                if share:
                    ax.text(x, y, f"{share:.0%}", ha="center", va="center", fontsize=7,
                            color="white" if share > 0.6 else "black")
        names = [f"{c} p={p}" + (f" k={k}" if k != 1 else "") + (" (trained)" if trained else "")
                 for trained, c, p, k in keys]
        ax.set_xticks(range(len(keys)), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(blocks)), blocks, fontsize=8)
        ax.grid(False)
        ax.set_title(f"{arch}: blocks removed (share of trials)")
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def robustness(table5):
    """Ticket - dense accuracy (points) on each robustness test set, per ticket."""
    rows = [r for r in table5.rows if any(r.cells.get(c, MISSING).mean is not None for c in table5.columns)]
    if not rows:
        return None
    columns = {c: h for c, h in table5.columns.items() if any(r.cells.get(c, MISSING).mean is not None for r in rows)}
    fig, (ax,) = _panels(1, max(5.5, 1.3 * len(rows)), 4.0)
    width = 0.8 / len(columns)
    for k, (column, header) in enumerate(columns.items()):
        cells = [(i, r.cells.get(column, MISSING)) for i, r in enumerate(rows)]
        kept = [(i, c) for i, c in cells if c.mean is not None]
        errors = [c.std or 0 for _, c in kept] if any(c.std is not None for _, c in kept) else None
        ax.bar([i + k * width for i, _ in kept], [c.mean for _, c in kept], width, yerr=errors, capsize=2,
               label=header)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))], [f"{r.setting.split()[0]} {r.label}" for r in rows],
                  rotation=30, ha="right")
    ax.set(ylabel="ticket − dense accuracy (points)", title="Robustness of tickets at initialisation")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside: bars fill the plot area
    return fig


def all_plots(tables, rows):
    """{name: (caption, figure or None)}."""
    by_number = {t.number: t for t in tables}
    return {
        "diff_vs_p": ("Accuracy difference to dense vs p at initialisation (Table 2 as a figure); error bars: "
                      "std over seeds; grey: dense ±1 std; hollow squares: the paper", diff_vs_p(by_number[2], rows)),
        "curves": ("Test accuracy per epoch, dense vs tickets (mean over seeds)", curves(rows)),
        "speedup": ("Measured vs FLOPs-ideal training speed-up (Table 4)", speedup(by_number[4])),
        "emissions": ("CO2 and energy per trial", emissions(rows)),
        "removed_blocks": ("Which blocks each criterion removes: the share of its trials (seeds, rewind points) "
                           "that removed the block; k=K: removed in K rounds that each re-score the shallower net "
                           "(beside the one-shot column of the same p)", removed_blocks(rows)),
        "robustness": ("Robustness: accuracy difference to dense (Table 5)", robustness(by_number[5])),
    }
