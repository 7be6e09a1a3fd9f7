"""The paper's Tables 1-5 from result rows. Every setting, criterion and p a sweep has gets a row;
the paper's value sits beside ours where the paper ran that setting.

1: Algorithm 1, criterion x rewind point; 2: at init, criterion x p; 3: filter vs layer tickets;
4: MACs, memory and CO2 cut, measured and FLOPs-ideal training speed-up; 5: robustness."""

from layerlth.analysis.cells import Cell, Row, Table
from layerlth.analysis.rows import (
    baseline_key,
    dense_groups,
    epochs_of,
    finished,
    setting,
    stats,
    ticket_groups,
)
from layerlth.tickets.verdict import BASELINE, TICKET, verdict, verdicts

ROBUSTNESS = {  # result column -> header; CIFAR-10-C only from the archive (cifar10c_source)
    "cifar10c": ("acc_cifar10c", "CIFAR-10-C"),
    "corruptions_generated": ("acc_cifar10c", "generated corruptions (not CIFAR-10-C)"),
    "cifar102": ("acc_cifar102", "CIFAR-10.2"),
    "fgsm": ("acc_fgsm", "FGSM"),
    "pgd": ("acc_pgd", "PGD"),
}
ESTIMATED_NOTE = "* emissions from an energy model, not measured (no RAPL/NVML): {}"


def all_tables(rows, reference):
    return [table1(rows, reference), table2(rows, reference), table3(rows, reference),
            table4(rows, reference), table5(rows, reference)]


def _verdicts_by_setting(rows, kinds):
    for v in verdicts(rows):
        if v["kind"] in kinds:
            yield setting(tuple(v[n] for n in BASELINE)), v


def _diff_cell(v, paper):
    return Cell(v["diff"], v["ticket_std"] if v["ticket_n"] > 1 else None, v["ticket_n"], paper)


def _context(v):
    return {"arch": v["arch"], "dataset": v["dataset"], "criterion": v["criterion"], "p": v["p"], "rounds": v["rounds"]}


def _way(v):
    """How the blocks went, for a row label: nothing for one shot (the paper's), else the rounds."""
    return f" k={v['rounds']}" if v.get("rounds", 1) != 1 else ""


def _assemble(number, title, cells, columns, notes=(), paper_of=None):
    """cells: {(setting, label): {column: Cell}} -> Table with rows in insertion order. `paper_of(
    setting, label, column)` gives the paper's value for a cell the sweep has no trial for."""
    table = Table(number, title, columns, notes=list(notes))
    table.rows = [Row(s, label, row) for (s, label), row in cells.items()]
    for row in table.rows if paper_of else ():
        for column in columns:
            if column not in row.cells and (value := paper_of(row.setting, row.label, column)) is not None:
                row.cells[column] = Cell(None, paper=value)
    return table


def rewind_column(rewind, epochs, reinit=False):
    """theta_i in the paper's 200-epoch scale: rewinding to epoch 2 of 16 is theta_25."""
    return "reinit" if reinit else f"theta_{round(200 * rewind / epochs)}"


def table1(rows, reference):
    cells, columns, contexts = {}, {}, {}
    epochs = {baseline_key(r): epochs_of(r) for r in finished(rows)}
    for name, v in _verdicts_by_setting(rows, ("after_training",)):
        total = epochs[tuple(v[n] for n in BASELINE)]
        column = rewind_column(v["rewind"], total, v["reinit"])
        columns[column] = "reinit" if v["reinit"] else f"θ_{column[6:]} (epoch {v['rewind']}/{total})"
        paper = reference.value(1, v["criterion"], column, _context(v))
        label = f"{v['criterion']} p={v['p']}{_way(v)}"
        cells.setdefault((name, label), {})[column] = _diff_cell(v, paper)
        contexts[(name, label)] = _context(v)
    columns = dict(sorted(columns.items(), key=lambda c: (c[0] == "reinit", 0 if c[0] == "reinit" else int(c[0][6:]))))
    note = "θ_i: the dense weights of epoch i of 200, scaled to the sweep's epochs; reinit: random re-initialisation"
    return _assemble(1, reference.title(1), cells, columns, [note], lambda name, label, column: reference.value(
        1, contexts[(name, label)]["criterion"], column, contexts[(name, label)]))


def table2(rows, reference):
    cells, ps, contexts = {}, set(), {}
    for name, v in _verdicts_by_setting(rows, ("at_init",)):
        ps.add(v["p"])
        paper = reference.value(2, v["criterion"], f"p={v['p']}", _context(v))
        label = v["criterion"] + _way(v)
        cells.setdefault((name, label), {})[f"p={v['p']}"] = _diff_cell(v, paper)
        contexts[(name, label)] = _context(v)
    return _assemble(2, reference.title(2), cells, {f"p={p}": f"p = {p}" for p in sorted(ps)},
                     paper_of=lambda name, label, column: reference.value(
                         2, contexts[(name, label)]["criterion"], column, contexts[(name, label)] | {"p": int(column[2:])}))


def table3(rows, reference):
    found = list(_verdicts_by_setting(rows, ("filter", "at_init")))
    filters = {(name, v["criterion"], v["p"], v["rounds"]) for name, v in found if v["kind"] == "filter"}
    cells, ps, contexts = {}, set(), {}
    for name, v in sorted(found, key=lambda item: item[1]["kind"] != "filter"):
        if (name, v["criterion"], v["p"], v["rounds"]) not in filters:
            continue  # a layer ticket without a filter ticket of its size is Table 2's
        ps.add(v["p"])
        paper_row = f"{'filter' if v['kind'] == 'filter' else 'layer'} {v['criterion']}"
        label = paper_row + _way(v)
        paper = reference.value(3, paper_row, f"p={v['p']}", _context(v))
        cells.setdefault((name, label), {})[f"p={v['p']}"] = _diff_cell(v, paper)
        contexts[(name, label)] = _context(v)
    return _assemble(3, reference.title(3), cells, {f"p={p}": f"p = {p}" for p in sorted(ps)},
                     paper_of=lambda name, label, column: reference.value(
                         3, label.removesuffix(_way(contexts[(name, label)])), column,
                         contexts[(name, label)] | {"p": int(column[2:])}))


def seconds_per_epoch(row):
    if not row.get("train_seconds") or not row.get("epochs_trained"):
        return None
    return row["train_seconds"] / row["epochs_trained"]


def _mean_of(rows, name):
    return stats([r.get(name) for r in rows])[0]


def _estimated(rows):
    return sorted({r["emissions_method"] for r in rows if "estimated" in str(r.get("emissions_method") or "")})


def efficiency(ticket_rows, dense_rows):
    """Per-seed savings of ticket rows against the mean of the dense rows of the same setting;
    memory, CO2 and speed against dense runs on the same device only."""
    per_seed = {"flops": [], "memory": [], "co2": [], "speedup": [], "ideal_speedup": []}
    used = []
    for row in ticket_rows:
        same_device = [d for d in dense_rows if d.get("device_name") == row.get("device_name")]
        if row.get("macs") and row.get("dense_macs"):
            per_seed["flops"].append(100 * (1 - row["macs"] / row["dense_macs"]))
            per_seed["ideal_speedup"].append(row["dense_macs"] / row["macs"])
        memory, co2 = _mean_of(same_device, "memory_bytes"), _mean_of(same_device, "co2_kg")
        if memory and row.get("memory_bytes") is not None:
            per_seed["memory"].append(100 * (1 - row["memory_bytes"] / memory))
        if co2 and row.get("co2_kg") is not None:
            per_seed["co2"].append(100 * (1 - row["co2_kg"] / co2))
            used += [row, *same_device]
        dense_seconds = stats([seconds_per_epoch(d) for d in same_device])[0]
        if dense_seconds and seconds_per_epoch(row):
            per_seed["speedup"].append(dense_seconds / seconds_per_epoch(row))
    return per_seed, _estimated(used)


def table4(rows, reference):
    columns = {"flops": "MACs −%", "memory": "training memory −%", "co2": "CO2 −%",
               "speedup": "speed-up, measured (x)", "ideal_speedup": "speed-up, FLOPs-ideal (x)"}
    units = {"flops": "percent", "memory": "percent", "co2": "percent", "speedup": "factor", "ideal_speedup": "factor"}
    dense = dense_groups(rows)
    cells, methods = {}, set()
    for key, group in ticket_groups(rows).items():
        values = dict(zip(TICKET, key))
        if values["kind"] != "at_init" or key[: len(BASELINE)] not in dense:
            continue
        per_seed, estimated = efficiency(group, dense[key[: len(BASELINE)]])
        methods.update(estimated)
        row = {}
        for column, found in per_seed.items():
            paper = reference.value(4, f"{values['arch']} p={values['p']}", column, values)
            mean, std, n = stats(found)
            row[column] = Cell(mean, std, n, paper, units[column], "*" if column == "co2" and estimated else "")
        cells[(setting(key[: len(BASELINE)]), f"{values['criterion']} p={values['p']}{_way(values)}")] = row
    notes = ["reductions against the mean of the dense runs; memory, CO2 and speed only against dense runs on "
             "the same device; speed-up = dense seconds per epoch / ticket's; FLOPs-ideal = dense MACs / ticket MACs"]
    if methods:
        notes.append(ESTIMATED_NOTE.format("; ".join(sorted(methods))))
    return _assemble(4, reference.title(4), cells, columns, notes)


def _robust_values(rows, column):
    name, _ = ROBUSTNESS[column]
    if column in ("cifar10c", "corruptions_generated"):
        wanted = "archive" if column == "cifar10c" else "generated"
        rows = [r for r in rows if r.get("cifar10c_source") == wanted]
    return [r[name] for r in rows if r.get(name) is not None]


def table5(rows, reference):
    dense = dense_groups(rows)
    present = {c for c in ROBUSTNESS if _robust_values(finished(rows), c)}
    cells = {}
    for key, group in ticket_groups(rows).items():
        values = dict(zip(TICKET, key))
        if values["kind"] != "at_init" or key[: len(BASELINE)] not in dense:
            continue
        row = {}
        for column in ROBUSTNESS:
            ours, base = _robust_values(group, column), _robust_values(dense[key[: len(BASELINE)]], column)
            paper = reference.value(5, f"{values['arch']} p={values['p']}", column, values)
            if column == "corruptions_generated":
                paper = None  # generated corruptions are never compared with CIFAR-10-C
            row[column] = _diff_cell(verdict(base, ours), paper) if ours and base else Cell(None, paper=paper)
        cells[(setting(key[: len(BASELINE)]), f"{values['criterion']} p={values['p']}{_way(values)}")] = row
    notes = []
    if not present:
        notes.append("no result row carries robustness columns yet (acc_cifar10c with cifar10c_source, "
                     "acc_cifar102, acc_fgsm, acc_pgd): this table fills once the trials evaluate them")
    if "corruptions_generated" in present:
        notes.append("generated corruptions are our own corruption of the test set, not the CIFAR-10-C archive: "
                     "they are never compared with the paper's CIFAR-10-C column")
    columns = {c: header for c, (_, header) in ROBUSTNESS.items() if c in present or c in ("cifar10c", "cifar102")}
    return _assemble(5, reference.title(5), cells, columns, notes)
