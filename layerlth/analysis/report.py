"""From a finished sweep to the paper, side by side: Tables 1-5 (Markdown, CSV, LaTeX), figures
(PNG, PDF), one self-contained HTML page, and a W&B report (published, or its spec written)."""

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from layerlth.analysis import formats, html, wandb_report
from layerlth.analysis.paper import PAPER, load_reference
from layerlth.analysis.provenance import provenance, resolve_grid
from layerlth.analysis.rows import read_rows
from layerlth.analysis.tables import all_tables
from layerlth.foundations.atomic import write_atomic, write_json_atomic
from layerlth.search.tables import load_searches
from layerlth.search.tables import markdown as depth_markdown

DESCRIPTION = """Build the report of a sweep: the paper's Tables 1-5 with our numbers beside the
paper's, the figures, one self-contained report.html, and a W&B report.

  layerlth report results/sweeps/paper                 # writes results/sweeps/paper/report/
  layerlth report results/sweeps/demo --wandb-report   # ... and publishes the W&B report
  layerlth report runs/*/result.json --out my_report   # any result files, dirs or results.csv
  layerlth report --publish results/sweeps/paper/report/wandb_report.json

Input: a sweep directory (its trials/*/result.json, with per-epoch curves), or result files,
directories holding them, or a results.csv/.parquet (no curves), as `layerlth verdict` takes them.

Tables (printed as Markdown; written as tableN.md, tableN.csv with one line per cell, tableN.tex
with booktabs): every cell is our mean ± std over seeds with the number of seeds, the paper's
value beside it (analysis/paper.yaml; only where the paper ran that arch and dataset), and ✓/✗:
whether both fall on the same side (win or lose at xi = 0; saving or cost; faster or slower).
  1  Algorithm 1: trained criteria x rewind point θ_i (epoch i of 200, scaled to the sweep's)
  2  at initialisation: criterion x p
  3  filter vs layer tickets of the same size
  4  % fewer MACs, % less training memory, % less CO2 (vs the mean dense run), training speed-up
     = dense seconds per epoch / ticket's on the same device, beside the FLOPs-ideal dense/ticket MACs
  5  robustness: CIFAR-10-C (archive only), generated corruptions, CIFAR-10.2, FGSM, PGD, from the
     rows' acc_* columns once the trials evaluate them
Every arch, criterion and p of the sweep gets a row; '-' marks a cell without trials. CO2 from
codecarbon's model (no RAPL/NVML) is marked *.

Figures (plots/NAME.png and .pdf): diff_vs_p, curves, speedup, emissions, removed_blocks,
robustness. report.html inlines tables and figures and lists the provenance: grid, trials
finished/errored/missing, hardware, emissions and memory method, git commit, library versions.

W&B: wandb_report.json (runs of the W&B group named like the sweep, in --wandb-project) is always
written; --wandb-report publishes it when an API key is configured, otherwise prints the command
that publishes it later. Publishing gives up after 60 s without an answer."""


@dataclass
class Built:
    directory: Path
    html: Path
    tables: list
    plots: dict       # {name: png path}
    skipped: list     # [(plot name, why)]
    spec: Path
    markdown: str


def home(path):
    """The directory a report of `path` belongs to: a sweep's own for its trials/ or results table."""
    path = Path(path).resolve()
    if path.name == "trials" or path.name in ("results.csv", "results.parquet"):
        return path.parent
    return path if path.is_dir() else None


def output_dir(paths, out):
    if out:
        return Path(out)
    if len(paths) == 1 and home(paths[0]) is not None:
        return home(paths[0]) / "report"
    raise ValueError(f"where should the report go? give --out DIR (inputs {[str(p) for p in paths]} "
                     "are not one sweep or directory)")


def sweep_name(paths):
    first = Path(paths[0]).resolve()
    return (home(first) or first.parent).name


def _write(path, data):
    write_atomic(path, lambda handle: handle.write(data))
    path.chmod(0o644)  # a report is for reading, by a web server too


def _save_figure(fig, directory, name):
    import matplotlib.pyplot as plt

    files = {}
    for kind in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=kind, dpi=150)
        files[kind] = buffer.getvalue()
        _write(directory / f"{name}.{kind}", files[kind])
    plt.close(fig)
    return files["png"]


def build(paths, out=None, grid=None, paper=None, project="layerlth", entity=None, name=None):
    """Write the report of the rows found in `paths`; return where everything went."""
    if not paths:
        raise ValueError("no input: give a sweep directory, result files or a results table")
    from layerlth.analysis import plots  # matplotlib: loaded only when a report is built

    rows = read_rows(paths)
    if not rows:
        raise ValueError(f"no result rows in {[str(p) for p in paths]}")
    directory = output_dir(paths, out)
    name = name or sweep_name(paths)
    tables = all_tables(rows, load_reference(paper))
    for table in tables:
        _write(directory / f"{table.name}.md", (formats.markdown(table) + "\n").encode())
        _write(directory / f"{table.name}.csv", formats.csv_text(table).encode())
        _write(directory / f"{table.name}.tex", formats.latex(table).encode())
    markdown = "\n\n".join(formats.markdown(t) for t in tables)
    _write(directory / "tables.md", (markdown + "\n").encode())
    figures, pngs, skipped = [], {}, []
    for plot, (caption, fig) in plots.all_plots(tables, rows).items():
        if fig is None:
            skipped.append((plot, "the rows hold nothing to plot"))
            continue
        figures.append((plot, caption, _save_figure(fig, directory / "plots", plot)))
        pngs[plot] = directory / "plots" / f"{plot}.png"
    searches = load_searches(paths)
    if searches:  # the sweep ran depth searches
        from layerlth.search.plot import depth_figure

        depth = depth_markdown(searches)
        _write(directory / "depth_search.md", (depth + "\n").encode())
        markdown += "\n\n" + depth
        caption = "Depth search: accuracy difference vs p at the points each search visited, p* dashed"
        saved = _save_figure(depth_figure(searches), directory / "plots", "depth_search")
        figures.append(("depth_search", caption, saved))
        pngs["depth_search"] = directory / "plots" / "depth_search.png"
    info = provenance(rows, resolve_grid(grid, paths))
    page = html.page(f"layerlth report: {name}", tables, figures, info, skipped)
    _write(directory / "report.html", page.encode())
    spec = wandb_report.report_spec(name, [formats.markdown(t) for t in tables], project, entity)
    write_json_atomic(spec, directory / "wandb_report.json")
    return Built(directory, directory / "report.html", tables, pngs, skipped, directory / "wandb_report.json", markdown)


def publish_command(spec_path):
    return f"layerlth report --publish {spec_path}"


def share(spec_path, wanted):
    """Publish the W&B report if wanted and possible; say what happened either way."""
    if not wanted:
        return f"W&B report spec: {spec_path} (publish with `{publish_command(spec_path)}`)"
    if not wandb_report.can_publish():
        return (f"W&B: no API key (or WANDB_MODE offline); spec written to {spec_path}; "
                f"publish later with `{publish_command(spec_path)}`")
    spec = json.loads(Path(spec_path).read_text())
    try:
        return f"W&B report: {wandb_report.publish(spec)}"
    except Exception as error:  # network, auth or server: the local report stands
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"W&B report not published ({first}); spec in {spec_path}; retry with `{publish_command(spec_path)}`"


def add_arguments(parser):
    parser.add_argument("paths", nargs="*",
                        help="a sweep directory, or result.json files, directories, results CSV/Parquet")
    parser.add_argument("--out", help="report directory (default: <sweep directory>/report)")
    parser.add_argument("--grid", help="the sweep's grid (name or YAML), to list missing trials "
                                       "(default: the built-in grid named like the sweep directory, if any)")
    parser.add_argument("--paper", default=str(PAPER),
                        help="the paper's reference values (default: analysis/paper.yaml)")
    parser.add_argument("--name", help="sweep name: the report's title and the W&B group (default: the directory's name)")
    parser.add_argument("--wandb-report", action="store_true", help="publish the W&B report (needs an API key)")
    parser.add_argument("--wandb-project", default="layerlth",
                        help="W&B project of the sweep's runs (default layerlth)")
    parser.add_argument("--wandb-entity", help="W&B entity (default: the API key's)")
    parser.add_argument("--publish", metavar="SPEC", help="publish a wandb_report.json written earlier, then exit")
    parser.add_argument("--quiet", action="store_true", help="do not print the tables")
    return parser


def run(args):
    if args.publish:
        print(share(args.publish, True))
        return 0
    built = build(args.paths, args.out, args.grid, args.paper, args.wandb_project, args.wandb_entity, args.name)
    if not args.quiet:
        print(built.markdown)
        print()
    for plot, why in built.skipped:
        print(f"figure {plot} skipped: {why}")
    print(share(built.spec, args.wandb_report))
    print(f"report: {built.html.resolve()}")
    return 0


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(prog="report.py", description=DESCRIPTION,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
