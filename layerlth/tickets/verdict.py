"""Winning tickets (the paper's Eq. 1): acc(ticket) + xi >= acc(dense), xi >= 0.

Judged on means over seeds, for xi = 0 (the paper's tables), 1 point, and one standard deviation
of the dense accuracy over seeds (n/a, None, with fewer than two dense seeds: no spread to measure).
Accuracies are fractions; differences are printed in points."""

import math
import statistics


def _std(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def signed(points):
    """The paper's notation: (+)0.40 when the ticket matches or beats the dense net, (-)0.50 else."""
    return f"({'+' if points >= 0 else '-'}){abs(points):.2f}"


def verdict(dense_accs, ticket_accs):
    dense, ticket = list(dense_accs), list(ticket_accs)
    if not dense or not ticket:
        raise ValueError("a verdict needs at least one dense and one ticket accuracy")
    dense_mean, ticket_mean = statistics.fmean(dense), statistics.fmean(ticket)
    diff = 100 * (ticket_mean - dense_mean)
    xi_std = 100 * _std(dense)
    wins_std = diff + xi_std >= 0 if len(dense) > 1 else None
    return {
        "dense_mean": 100 * dense_mean, "dense_std": xi_std, "dense_n": len(dense),
        "ticket_mean": 100 * ticket_mean, "ticket_std": 100 * _std(ticket), "ticket_n": len(ticket),
        "diff": diff, "diff_text": signed(diff),
        "wins_xi0": diff >= 0, "wins_xi1": diff + 1 >= 0, "wins_xi_std": wins_std,
    }


# a ticket is compared with the dense runs of the same setting, over seeds
BASELINE = ("arch", "dataset", "shortcut", "recipe", "epochs", "train_subset")
TICKET = BASELINE + ("kind", "criterion", "p", "rewind", "reinit", "rounds")
# ticket options added after rows were first written: a row without one (or with an empty table
# cell) was made with the default
ADDED_LATER = {"rounds": 1}


def value(row, name):
    found = row.get(name)
    if name in ADDED_LATER and (found is None or (isinstance(found, float) and math.isnan(found))):  # missing, null, NaN
        return ADDED_LATER[name]
    return int(found) if name == "rounds" else found


def _key(row, names):
    return tuple(value(row, n) for n in names)


def finished(rows):
    """The rows of trials that finished with a test accuracy."""
    return [r for r in rows if r.get("status", "finished") == "finished" and r.get("final_test_acc") is not None]


def is_dense(row):
    return row["kind"] == "dense" or not row["p"]


def verdicts(rows):
    """One verdict per ticket setting found in result rows, against its dense rows."""
    dense, groups = {}, {}
    for row in finished(rows):
        if is_dense(row):
            dense.setdefault(_key(row, BASELINE), []).append(row["final_test_acc"])
        else:
            groups.setdefault(_key(row, TICKET), []).append(row["final_test_acc"])
    table = []
    for key, accs in sorted(groups.items(), key=lambda item: tuple(map(str, item[0]))):
        baseline = dense.get(key[: len(BASELINE)])
        if baseline:
            table.append(dict(zip(TICKET, key)) | verdict(baseline, accs))
    return table


def _yes_no(wins):
    return "n/a" if wins is None else ("yes" if wins else "no")


def format_verdicts(table):
    header = f"{'arch':<10}{'kind':<16}{'criterion':<10}{'p':>3}{'rounds':>7}{'rewind':>7}  {'dense':>12}  {'ticket':>12}  {'diff':>8}  wins(xi=0/1/std)"
    lines = [header]
    for v in table:
        rewind = "reinit" if v["reinit"] else (v["rewind"] if v["kind"] == "after_training" else "")
        lines.append(
            f"{v['arch']:<10}{v['kind']:<16}{v['criterion']:<10}{v['p']:>3}{v['rounds']:>7}{rewind:>7}  "
            f"{v['dense_mean']:6.2f}±{v['dense_std']:<5.2f}  {v['ticket_mean']:6.2f}±{v['ticket_std']:<5.2f}  "
            f"{v['diff_text']:>8}  {'/'.join(_yes_no(v[k]) for k in ('wins_xi0', 'wins_xi1', 'wins_xi_std'))}"
        )
    return "\n".join(lines)
