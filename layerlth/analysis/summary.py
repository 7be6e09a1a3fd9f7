"""Result rows as the short tables people read: one line per trial, then the verdicts."""

from collections import Counter

from layerlth.tickets.verdict import format_verdicts, is_dense, value, verdicts


def _what(row):
    if is_dense(row):
        return "dense"
    extra = f" rewind {row['rewind']}" if row["kind"] == "after_training" else ""
    extra += f" k={value(row, 'rounds')}" if value(row, "rounds") != 1 else ""
    return f"{row['kind']} {row['criterion']} p={row['p']}{extra}"


def trial_table(rows):
    header = (f"{'trial':<40}{'seed':>5}{'test acc':>10}{'params':>10}{'MACs':>9}{'train s':>9}"
              f"{'CO2 g':>9}  status")
    lines = [header, "-" * len(header)]
    for r in sorted(rows, key=lambda r: (r["arch"], r["kind"] != "dense", _what(r), r["seed"])):
        if r.get("status") != "finished":
            lines.append(f"{r['arch'] + ' ' + _what(r):<40}{r['seed']:>5}{'':>47}  {r.get('status')}")
            continue
        co2 = f"{r['co2_kg'] * 1e3:9.4f}" if r.get("co2_kg") is not None else f"{'-':>9}"
        lines.append(
            f"{r['arch'] + ' ' + _what(r):<40}{r['seed']:>5}{r['final_test_acc']:>10.2%}{r['params'] / 1e3:>9.1f}k"
            f"{r['macs'] / 1e6:>8.2f}M{r['train_seconds']:>9.1f}{co2}  finished"
        )
    methods = sorted({r["emissions_method"] for r in rows if r.get("emissions_method") not in (None, "disabled")})
    if methods:
        lines.append(f"energy: {'; '.join(methods)}")
    return "\n".join(lines)


def summary(rows):
    counts = Counter(row.get("status") for row in rows)
    lines = [trial_table(rows), "", f"trials: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}"]
    for row in rows:
        if row.get("status") == "errored":
            lines.append(f"  errored {row['trial_id']}: {row['error'].strip().splitlines()[-1]}")
    table = verdicts(rows)
    lines.append(format_verdicts(table) if table else "no ticket has a finished dense baseline to compare with")
    return "\n".join(lines)


def trial_lines(row, record=None):
    """One trial's result in a few lines (what `layerlth ticket` ends with); `record` is where its
    whole record was written."""
    lines = [f"{row['arch']} {_what(row)} on {row['dataset']}, seed {row['seed']}: {row.get('status')}"]
    if row.get("final_test_acc") is not None:
        lines.append(f"  test accuracy  {row['final_test_acc']:.2%} (best {row['best_test_acc']:.2%}) after "
                     f"{row['epochs_trained']} epochs")
    for name, label, unit, scale in (("params", "parameters", "k", 1e3), ("macs", "MACs", "M", 1e6)):
        if row.get(name) is not None:
            dense, digits = row.get(f"dense_{name}"), 1 if unit == "k" else 2
            less = (f" (-{1 - row[name] / dense:.1%} vs dense {dense / scale:,.{digits}f}{unit})"
                    if dense and dense != row[name] else "")
            lines.append(f"  {label:<14} {row[name] / scale:,.{digits}f}{unit}{less}")
    if row.get("removed"):
        lines.append(f"  removed        {', '.join(row['removed'])}")
    if row.get("train_seconds") is not None:
        lines.append(f"  training       {row['train_seconds']:.1f} s, {row.get('images_per_second', 0):,.0f} img/s on "
                     f"{row.get('device_name')} ({row.get('training_path')})")
    if row.get("co2_kg") is not None:
        lines.append(f"  CO2            {row['co2_kg'] * 1e3:.4f} g, {row['energy_kwh'] * 1e3:.4f} Wh "
                     f"({row['emissions_method']})")
    if record:
        lines.append(f"record: {record} (--json prints it whole)")
    return "\n".join(lines)
