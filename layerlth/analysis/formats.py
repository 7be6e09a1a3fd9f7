"""A table as Markdown (printed), CSV (one line per cell, for further analysis) and LaTeX (booktabs)."""

import csv
import io

from layerlth.analysis.cells import MISSING

_SIGN = {True: "✓", False: "✗", None: ""}


def number(value, unit):
    if unit == "points":
        return f"{value:+.2f}"
    return f"{value:.2f}"


def ours(cell):
    """`+0.21 ± 0.10 (3)`: mean, std over seeds (when there are two or more), number of seeds."""
    if cell.mean is None:
        return "-"
    spread = f" ± {cell.std:.2f}" if cell.std is not None else ""
    return f"{number(cell.mean, cell.unit)}{spread} ({cell.n}){cell.flag}"


def paper(cell):
    if cell.paper is None:
        return ""
    return f"{number(cell.paper, cell.unit)} {_SIGN[cell.agrees]}".strip()


def cell_text(cell):
    text = ours(cell)
    return f"{text} · paper {paper(cell)}" if cell.paper is not None else text


def markdown(table):
    lines = [f"**Table {table.number}.** {table.title}", ""]
    if table.rows:
        header = ["setting", "", *table.columns.values()]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in table.rows:
            texts = [cell_text(row.cells.get(c, MISSING)) for c in table.columns]
            lines.append("| " + " | ".join([row.setting, row.label, *texts]) + " |")
    else:
        lines.append("(no trials of this kind in the sweep)")
    legend = "cells: our mean ± std over seeds (seeds) · the paper's value, ✓ when both are on the same side"
    lines += [""] + [f"_{note}_" for note in [legend, *table.notes]]
    return "\n".join(lines)


def csv_text(table):
    """One line per cell: setting, row, column, our mean, std, seeds, the paper's value, sign agreement."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["table", "setting", "row", "column", "mean", "std", "n", "unit", "paper", "sign_agrees", "flag"])
    for row in table.rows:
        for column in table.columns:
            cell = row.cells.get(column, MISSING)
            writer.writerow([table.number, row.setting, row.label, column, _blank(cell.mean), _blank(cell.std),
                             cell.n, cell.unit, _blank(cell.paper), _blank(cell.agrees), cell.flag])
    return buffer.getvalue()


def _blank(value):
    return "" if value is None else value


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"θ": r"$\theta$", "−": "-", "±": r"$\pm$", "✓": r"$\checkmark$", "✗": r"$\times$",
                  "·": r"$\cdot$"}


def latex_escape(text):
    text = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    for symbol, command in _LATEX_SYMBOLS.items():
        text = text.replace(symbol, command)
    return text


def latex(table):
    """A booktabs table (needs \\usepackage{booktabs, amssymb})."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(table.title)}}}", rf"\label{{tab:layerlth-{table.number}}}",
             r"\begin{tabular}{ll" + "r" * len(table.columns) + "}", r"\toprule",
             " & ".join(["setting", "", *map(latex_escape, table.columns.values())]) + r" \\", r"\midrule"]
    for row in table.rows:
        texts = [latex_escape(cell_text(row.cells.get(c, MISSING))) for c in table.columns]
        lines.append(" & ".join([latex_escape(row.setting), latex_escape(row.label), *texts]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.notes:
        lines.append(rf"\par\footnotesize {latex_escape(note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
