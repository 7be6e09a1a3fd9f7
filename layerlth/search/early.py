"""Early stopping's verdict against the final one: how often a ticket that early stopping would
stop (trailing its dense run by more than the margin at a rung) also loses at the end, measured on
the full curves of finished trials (`tickets.early_stop` stops them while they train)."""

import statistics

from layerlth.tickets.early_stop import behind, curve, rung_epochs
from layerlth.tickets.verdict import BASELINE


def early_loss(ticket_history, dense_history, rungs, margin):
    """Would early stopping have stopped this ticket? (at any rung where both curves have a value)"""
    ticket, dense = curve(ticket_history), curve(dense_history)
    return any(epoch in ticket and epoch in dense and behind(ticket, dense, epoch) > margin for epoch in rungs)


def agreement(rows, rungs, margin):
    """How often early stopping's verdict (stopped = loss) is the final per-seed verdict at xi = 0
    (ticket's final accuracy below its dense run's), over finished tickets with full curves."""
    dense = {_seed_key(r): r for r in rows if r.get("status") == "finished" and (r["kind"] == "dense" or not r["p"])}
    pairs = []
    for row in rows:
        if row.get("status") != "finished" or row["kind"] == "dense" or not row["p"] or _seed_key(row) not in dense:
            continue
        base = dense[_seed_key(row)]
        epochs = rung_epochs(rungs, len(base.get("history") or ()))
        stopped = early_loss(row.get("history"), base.get("history"), epochs, margin)
        pairs.append((stopped, row["final_test_acc"] < base["final_test_acc"]))
    if not pairs:
        return None
    stopped = [final for early, final in pairs if early]
    return {"tickets": len(pairs), "agree": statistics.fmean(early == final for early, final in pairs),
            "stopped": len(stopped), "stopped_that_lost": sum(stopped), "rungs": list(rungs), "margin": margin}


def _seed_key(row):
    return tuple(row.get(n) for n in BASELINE) + (row.get("seed"),)
