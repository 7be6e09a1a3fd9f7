"""Depth search: the largest number of blocks p* whose ticket still wins, found in rounds of trials.

A search fixes one setting (arch, data, recipe, kind, criterion, ...) and its seeds, and asks at
which p in [low, high] the ticket (mean test accuracy over the seeds) stops matching the dense net
(mean over the same seeds) under a rule: xi points (acc(ticket) + xi >= acc(dense), the paper's
Eq. 1; xi = 0 by default) or one standard deviation of the dense accuracies (`xi: std`).

It assumes wins are monotone in p (a ticket that wins at p also wins below it), and keeps an
interval: `a`, the largest evaluated p below every evaluated loss that wins (low - 1 before any),
and `b`, the smallest evaluated p that loses (high + 1 before any). Each round splits (a, b) into
`width` + 1 parts and evaluates the split points, every seed at once; it ends when b = a + 1.
p* = a: the largest p such that it and every evaluated p below it win. A win above a loss breaks
the assumption: it is reported (`contradictions`), never used.

Proposals depend only on the outcomes of completed rounds, so the same results give the same
rounds and the same p*: a search is rebuilt by replaying its rounds against the stored records
(`replay`), with nothing of its own to save. It proposes configs and reads records; it never
trains (`run_search` takes the function that does).
"""

import math
from dataclasses import dataclass, field

from layerlth.foundations.config import TrialConfig
from layerlth.foundations.recipes import training_recipe
from layerlth.tickets.verdict import verdict

# a trial that stopped early lost at its rung: for the search, a loss
LOST = ("stopped_early", "errored")


@dataclass(frozen=True)
class Search:
    label: str
    base: TrialConfig  # the setting; its p and seed are set per trial
    seeds: tuple
    low: int
    high: int
    xi: float | str = 0.0  # points, or "std"
    width: int = 1  # p values evaluated per round
    notes: tuple = field(default=(), compare=False)

    def ticket(self, p, seed):
        return TrialConfig.from_dict(self.base.to_dict() | {"p": p, "seed": seed})

    def dense(self, seed):
        return self.ticket(1 if self.high else 0, seed).dense_config()

    def round_configs(self, points, first):
        """The trials of a round: each point at every seed, and the dense runs in the first."""
        dense = [self.dense(seed) for seed in self.seeds] if first else []
        return dense + [self.ticket(p, seed) for p in points for seed in self.seeds]

    @property
    def rule(self):
        return "one dense std" if self.xi == "std" else f"xi = {self.xi:g} points"


def wins(search, dense_accs, ticket_accs):
    """Does the ticket win under the search's rule? (verdict's columns, generalised to any xi)."""
    judged = verdict(dense_accs, ticket_accs)
    if search.xi == "std":
        return bool(judged["wins_xi_std"]), judged
    return judged["diff"] + float(search.xi) >= 0, judged


def bounds(search, outcomes):
    """(a, b): the largest win below every loss, the smallest loss; see the module's docstring."""
    b = min((p for p, won in outcomes.items() if not won), default=search.high + 1)
    a = max((p for p, won in outcomes.items() if won and p < b), default=search.low - 1)
    return a, b


def next_points(search, outcomes):
    """The p values of the next round ([] when the search is done)."""
    a, b = bounds(search, outcomes)
    if b - a <= 1:
        return []
    parts = search.width + 1
    return sorted({a + max(1, min(b - a - 1, round(i * (b - a) / parts))) for i in range(1, parts)})


def outcome(search, records, p):
    """(won, evidence) of point p from the records {trial hash: record}, or None while one is missing."""
    dense = [records.get(search.dense(seed).hash()) for seed in search.seeds]
    tickets = [records.get(search.ticket(p, seed).hash()) for seed in search.seeds]
    if any(r is None for r in dense + tickets):
        return None
    if any(r.get("status") != "finished" for r in dense):
        raise SearchError(f"{search.label}: a dense run of the search did not finish "
                          f"({[r.get('status') for r in dense]}); no verdict is possible")
    lost = [r for r in tickets if r.get("status") in LOST or r.get("final_test_acc") is None]
    if lost:
        return False, {"lost": [r.get("status") for r in lost]}
    won, judged = wins(search, [r["final_test_acc"] for r in dense], [r["final_test_acc"] for r in tickets])
    return won, judged


def usable(search, record):
    """A record that decides its point: any, but a stopped one only for a search that stops early
    (one without early stopping trains that trial in full)."""
    return record is not None and (record.get("status") != "stopped_early" or bool(search.base.stop_rungs))


class SearchError(RuntimeError):
    """A search that cannot go on (its dense runs failed)."""


def replay(search, records):
    """Replay the search's rounds against stored records: (rounds, outcomes, evidence, pending), where
    pending are the configs of the first round not fully stored (empty when the search is done)."""
    rounds, outcomes, evidence = [], {}, {}
    while True:
        points = next_points(search, outcomes)
        first = not rounds
        if not points and not first:
            return rounds, outcomes, evidence, []
        configs = search.round_configs(points, first)
        rounds.append(points)
        missing = [c for c in configs if not usable(search, records.get(c.hash()))]
        if missing:
            return rounds, outcomes, evidence, missing
        for p in points:
            outcomes[p], evidence[p] = outcome(search, records, p)
        if not points:
            return rounds, outcomes, evidence, []


def summary(search, records):
    """What the search found, from the records of its trials (it must be done)."""
    rounds, outcomes, evidence, pending = replay(search, records)
    if pending:
        raise SearchError(f"{search.label}: not done, {len(pending)} trials of round {len(rounds)} missing")
    a, b = bounds(search, outcomes)
    configs = [c for i, points in enumerate(rounds) for c in search.round_configs(points, i == 0)]
    asked = {c.hash(): records.get(c.hash()) for c in configs}
    return {
        "search": search.label, "arch": search.base.arch, "kind": search.base.kind,
        "criterion": search.base.criterion, "seeds": list(search.seeds), "range": [search.low, search.high],
        "rule": search.rule, "p_star": a if a >= search.low else None,
        "rounds": rounds, "visited": {p: outcomes[p] for p in sorted(outcomes)},
        "visit_order": [p for points in rounds for p in points],
        "diffs": {p: evidence[p].get("diff") for p in sorted(evidence)},
        "contradictions": sorted(p for p, won in outcomes.items() if won and p > b),
        "at_p_star": _point(evidence, records, search, a), "above_p_star": _point(evidence, records, search, b),
        "trials": len(asked), "epochs": sum(r.get("epochs_trained") or 0 for r in asked.values()),
        "grid_trials": len(search.seeds) * (search.high - search.low + 2),
        "grid_epochs": len(search.seeds) * (search.high - search.low + 2) * training_recipe(search.base).epochs,
    }


def _point(evidence, records, search, p):
    """Accuracy difference and MACs cut of the ticket at p (None when p was not evaluated)."""
    if p not in evidence:
        return None
    rows = [records.get(search.ticket(p, seed).hash()) for seed in search.seeds]
    cut = [r["macs_reduction"] for r in rows if r.get("macs_reduction") is not None]
    return {"p": p, "diff_points": evidence[p].get("diff"), "macs_reduction": sum(cut) / len(cut) if cut else None,
            "stopped": evidence[p].get("lost")}


def run_search(search, lookup, train, log=print):
    """Run a search one trial at a time: `lookup(config)` gives a stored record or None, `train(config)`
    trains a trial and returns its record. Returns (summary, trained count)."""
    records, trained = {}, 0
    while True:
        rounds, _, _, pending = replay(search, records)
        if not pending:
            return summary(search, records), trained
        for config in pending:
            record = lookup(config)
            if not usable(search, record):
                log(f"{search.label}: round {len(rounds)}, p={config.p} seed={config.seed}: training")
                record = train(config)
                trained += 1
            records[config.hash()] = record


def worst_case_points(search):
    """Most p values a search can evaluate: ceil(log_{width+1}) of the range's size per split, at most its size."""
    size = search.high - search.low + 1
    rounds = math.ceil(math.log(size + 1, search.width + 1)) if size else 0
    return min(size, rounds * search.width)
