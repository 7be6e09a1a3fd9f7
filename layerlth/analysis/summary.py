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
