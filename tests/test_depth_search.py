"""Depth search without Ray: the rounds it proposes on scripted results, its rebuild from records,
its bad input, and a real search without Ray sharing its trials with a grid."""

import json

import pytest

from layerlth.foundations.config import TrialConfig
from layerlth.search.core import Search, bounds, next_points, replay, summary
from layerlth.search.report import points_visited, price
from layerlth.search.specs import searches
from layerlth.sweep.grid import GridError

BASE = TrialConfig(kind="at_init", arch="resnet32", dataset="digits", criterion="grasp", epochs=2)


def scripted(search, truth, dense=0.80):
    """Records of every trial the search could ask for: the ticket at p has accuracy truth(p, seed)."""
    records = {}
    for seed in search.seeds:
        records[search.dense(seed).hash()] = {"status": "finished", "final_test_acc": dense, "epochs_trained": 2}
        for p in range(search.low, search.high + 1):
            records[search.ticket(p, seed).hash()] = {"status": "finished", "final_test_acc": truth(p, seed),
                                                      "epochs_trained": 2, "macs_reduction": p / 20}
    return records


def run(search, records):
    asked = []
    while True:
        rounds, _, _, pending = replay(search, {h: records[h] for h in asked})
        if not pending:
            return summary(search, {h: records[h] for h in asked}), rounds, asked
        asked += [c.hash() for c in pending]


def make(width=1, seeds=(0, 1), low=1, high=9, xi=0.0):
    return Search("s", BASE, seeds, low, high, xi, width)


def test_monotone_binary_search_finds_the_boundary():
    search = make()
    found, rounds, asked = run(search, scripted(search, lambda p, s: 0.81 if p <= 4 else 0.70))
    assert rounds == [[5], [2], [4]] and found["p_star"] == 4 and not found["contradictions"]
    assert found["visited"] == {2: True, 4: True, 5: False}
    assert found["at_p_star"]["p"] == 4 and found["above_p_star"]["p"] == 5
    assert found["at_p_star"]["diff_points"] == pytest.approx(1.0)
    assert found["trials"] == len(asked) == 2 * (1 + 3) and found["grid_trials"] == 2 * 10
    assert found["epochs"] == 2 * found["trials"] and found["grid_epochs"] == 2 * found["grid_trials"]


def test_non_monotone_results_are_reported_not_hidden():
    search = make(width=2)
    wins = {1, 2, 7}
    found, rounds, _ = run(search, scripted(search, lambda p, s: 0.81 if p in wins else 0.70))
    assert rounds[0] == [3, 7]  # a 3-ary split of 1..9
    assert found["p_star"] == 2 and found["contradictions"] == [7]
    assert found["above_p_star"]["p"] == 3


def test_all_win_and_none_win():
    search = make()
    assert run(search, scripted(search, lambda p, s: 0.80))[0]["p_star"] == 9  # a tie wins at xi = 0
    found = run(search, scripted(search, lambda p, s: 0.5))[0]
    assert found["p_star"] is None and found["at_p_star"] is None and found["above_p_star"]["p"] == 1


def test_xi_points_and_std_rules():
    lose_by_half = lambda p, s: 0.795 if p <= 6 else 0.70  # noqa: E731 (0.5 points behind up to p=6)
    assert run(make(xi=0.0), scripted(make(), lose_by_half))[0]["p_star"] is None
    assert run(make(xi=1.0), scripted(make(), lose_by_half))[0]["p_star"] == 6
    search = make(xi="std")
    records = scripted(search, lose_by_half)
    for seed, acc in ((0, 0.79), (1, 0.81)):  # dense std 1.41 points
        records[search.dense(seed).hash()]["final_test_acc"] = acc
    assert run(search, records)[0]["p_star"] == 6


def test_rebuild_from_records_asks_the_same_trials_and_no_finished_one_again():
    search = make()
    records = scripted(search, lambda p, s: 0.81 if p <= 6 else 0.70)
    _, rounds, asked = run(search, records)
    partial = {h: records[h] for h in asked[:5]}  # killed during the second round
    again_rounds, _, _, pending = replay(search, partial)
    assert again_rounds == rounds[:2] and {c.hash() for c in pending} == set(asked[4:6]) - set(partial)
    assert not set(c.hash() for c in pending) & set(partial)


def test_stopped_early_and_errored_tickets_are_losses():
    search = Search("s", TrialConfig.from_dict(BASE.to_dict() | {"stop_rungs": (0.5,)}), (0, 1), 1, 9)
    records = scripted(search, lambda p, s: 0.81)
    records[search.ticket(5, 1).hash()] = {"status": "stopped_early", "final_test_acc": None}
    records[search.ticket(4, 0).hash()] = {"status": "errored", "final_test_acc": None}
    found = run(search, records)[0]
    assert found["visited"] == {2: True, 3: True, 4: False, 5: False} and found["p_star"] == 3
    assert found["above_p_star"]["stopped"] == ["errored"]
    # without early stopping the stopped trial does not count: it is to be trained in full
    plain = make()
    _, _, _, pending = replay(plain, {**records, **scripted(plain, lambda p, s: 0.81),
                                      search.ticket(5, 1).hash(): records[search.ticket(5, 1).hash()]})
    assert [c.hash() for c in pending] == [search.ticket(5, 1).hash()]


def test_price_counts_trials_against_the_grid():
    search = make()
    assert points_visited(search, 4) == [2, 4, 5]
    cost = price(search)
    assert cost["grid_trials"] == 20 and cost["worst_trials"] == 2 * (1 + 4)
    assert 2 * (1 + 3) <= cost["expected_trials"] <= cost["worst_trials"]
    assert cost["expected_gpu_hours"] < 0.5 * cost["grid_gpu_hours"]


def test_bounds_and_points_stay_inside_the_interval():
    search = make(width=3, high=21)
    for outcomes in ({}, {5: True, 16: False}, {10: True, 12: False}, {3: False}):
        a, b = bounds(search, outcomes)
        assert all(a < p < b for p in next_points(search, outcomes))


SEARCH_GRID = "defaults: {dataset: digits, epochs: 1, recipe: he2016}\nsearches:\n  - %s\n"
BAD = [
    ("{arch: resnet32, range: [0, 3]}", r"searches\[0\] .*range=\[0, 3\] is outside what resnet32 allows: 1 <= low <= high <= 9"),
    ("{arch: resnet32, range: [2, 12]}", r"range=\[2, 12\] is outside .* <= 9"),
    ("{arch: resnet32, range: 3}", r"range=3: expected \[low, high\]"),
    ("{arch: resnet32, xi: -1}", r"xi=-1: expected a number of points >= 0 or 'std'"),
    ("{arch: resnet32, xi: sometimes}", r"xi='sometimes': expected a number"),
    ("{arch: resnet32, xi: std, seed: [0]}", r"xi='std' needs at least 2 seeds"),
    ("{arch: resnet32, width: 0}", r"width=0: expected an integer >= 1"),
    ("{arch: resnet32, kind: dense}", r"kind='dense' cannot remove blocks"),
    ("{arch: resnet32, p: 3}", r"p=3: a search chooses p itself"),
    ("{arch: resnet32, criterion: [grasp, nope]}", r"searches\[0\] \(.*criterion=nope\): unknown criterion"),
    ("{arch: resnet32, stop_rungs: [0.5, 1.2]}", r"stop_rungs=1.2: a rung is a fraction of training strictly between 0"),
    ("{arch: resnet32, stop_rungs: [0.5], stop_margin: -1}", r"stop_margin=-1: expected a number >= 0"),
]


@pytest.mark.parametrize("entry, message", BAD)
def test_bad_search_entries_are_named_before_anything_runs(tmp_path, entry, message):
    from layerlth.sweep.grid import load_grid

    path = tmp_path / "g.yaml"
    path.write_text(SEARCH_GRID % entry)
    with pytest.raises(GridError, match=message):
        searches(load_grid(str(path)))


def test_search_without_ray_relaunched_looks_up_every_trial(tmp_path, capsys):
    from layerlth.cli import main

    grid = tmp_path / "tiny.yaml"
    grid.write_text("name: tiny\ndefaults: {dataset: digits, arch: resnet20, recipe: he2016, epochs: 1, "
                    "train_subset: 128, score_batches: 1, emissions: false, device: cpu}\n"
                    "searches:\n  - {criterion: snip, seed: [0], range: [1, 3]}\n")
    main(["search", "--grid", str(grid), "--storage", str(tmp_path / "store")])
    out = capsys.readouterr().out
    found = json.loads((tmp_path / "store" / "tiny" / "searches.json").read_text())[0]
    assert found["trained_now"] == found["trials"] == 1 + len(found["visited"])
    assert f"p* = {found['p_star']}" in out or "p* = none" in out
    main(["search", "--grid", str(grid), "--storage", str(tmp_path / "store")])  # relaunch: all looked up
    again = json.loads((tmp_path / "store" / "tiny" / "searches.json").read_text())[0]
    assert again["trained_now"] == 0 and again["p_star"] == found["p_star"] and again["rounds"] == found["rounds"]

    from layerlth.analysis.report import build

    built = build([tmp_path / "store" / "tiny"])  # the report adds the search's table and figure
    table = (built.directory / "depth_search.md").read_text()
    assert f"| {found['search']} | xi = 0 points | 1 | " in table and built.plots["depth_search"].is_file()


# --- early stopping of losing tickets ---------------------------------------------------------------

def test_early_stopping_stops_a_trailing_ticket_with_its_evidence(tmp_path):
    from layerlth.tickets.dense_runs import DenseRun
    from layerlth.tickets.trial import run_trial

    common = dict(dataset="digits", arch="resnet20", recipe="he2016", epochs=4, train_subset=256, score_batches=1,
                  emissions=False, device="cpu", dense_dir=str(tmp_path / "dense"))
    ticket = TrialConfig(kind="at_init", criterion="snip", p=1, stop_rungs=(0.5,), **common)
    assert ticket.hash() == TrialConfig(kind="at_init", criterion="snip", p=1, **common).hash()  # same trial
    run_trial(ticket.dense_config())
    run = DenseRun(ticket, 4)
    stored = run.result()
    for h in stored["history"]:  # a dense curve no ticket can follow: 100% from the first epoch
        h["test_acc"] = 1.0
    run.save_result(stored)

    stopped = run_trial(ticket)
    assert stopped["status"] == "stopped_early" and stopped["epochs_trained"] == 2
    evidence = stopped["stop_evidence"]
    assert evidence["epoch"] == 2 and evidence["dense_test_acc"] == 1.0 and evidence["behind_points"] > 2
    assert evidence["ticket_test_acc"] == stopped["history"][-1]["test_acc"]
    kept = run_trial(TrialConfig.from_dict(ticket.to_dict() | {"stop_margin": 100.0}))
    assert kept["status"] == "finished" and kept["epochs_trained"] == 4


def test_early_verdict_agreement_on_full_curves():
    from layerlth.search.early import agreement

    def row(kind, p, seed, curve):
        return {"status": "finished", "kind": kind, "p": p, "seed": seed, "arch": "resnet20", "final_test_acc": curve[-1],
                "history": [{"epoch": e + 1, "test_acc": a} for e, a in enumerate(curve)]}

    rows = [row("dense", 0, 0, [0.5, 0.6, 0.7, 0.8]),
            row("at_init", 1, 0, [0.4, 0.5, 0.6, 0.7]),     # behind at epoch 2, loses: agree
            row("at_init", 2, 0, [0.4, 0.55, 0.75, 0.85]),  # behind at epoch 2, wins: disagree
            row("at_init", 3, 0, [0.5, 0.6, 0.7, 0.79])]    # never behind by 2 points, loses: disagree
    found = agreement(rows, [0.5], 2.0)
    assert found["tickets"] == 3 and found["stopped"] == 2 and found["stopped_that_lost"] == 1
    assert found["agree"] == pytest.approx(1 / 3)
