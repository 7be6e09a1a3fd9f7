"""Winning tickets (the paper's Eq. 1): acc(ticket) + xi >= acc(dense), xi >= 0.

Judged on means over seeds, for xi = 0 (the paper's tables), 1 point, and one standard deviation
of the dense accuracy over seeds. Accuracies are fractions; differences are printed in points."""

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
    return {
        "dense_mean": 100 * dense_mean, "dense_std": xi_std, "dense_n": len(dense),
        "ticket_mean": 100 * ticket_mean, "ticket_std": 100 * _std(ticket), "ticket_n": len(ticket),
        "diff": diff, "diff_text": signed(diff),
        "wins_xi0": diff >= 0, "wins_xi1": diff + 1 >= 0, "wins_xi_std": diff + xi_std >= 0,
    }
