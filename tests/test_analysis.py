"""The report of a sweep, built from real tiny trials run here (ResNet-20 on the digits, 2 epochs),
its cells checked against a computation from the rows themselves."""

import json
import statistics

import pytest
import yaml

from layerlth import run_trial
from layerlth.analysis import report, wandb_report
from layerlth.analysis.paper import PAPER, load_reference
from layerlth.analysis.rows import read_rows
from layerlth.analysis.tables import table2, table5
from layerlth.foundations.config import TrialConfig
from layerlth.sweep.store import SweepStore

SETTING = "resnet20 digits, he2016 recipe, 2 epochs"
BASE = dict(arch="resnet20", dataset="digits", recipe="he2016", epochs=2, score_batches=2, emissions=False,
            device="cpu")
TRIALS = [  # two dense seeds so a std exists; emissions measured for one dense and one ticket
    dict(kind="dense", seed=0, emissions=True), dict(kind="dense", seed=1),
    dict(kind="at_init", criterion="grasp", p=1, seed=0, emissions=True),
    dict(kind="at_init", criterion="grasp", p=1, seed=1),
    dict(kind="at_init", criterion="snip", p=1, seed=0), dict(kind="at_init", criterion="grasp", p=3, seed=0),
    dict(kind="after_training", criterion="kl", p=1, rewind=0, seed=0),
    dict(kind="filter", criterion="grasp", p=1, seed=0),
]
ERRORED = dict(kind="at_init", criterion="snip", p=1, seed=1)
MISSING_TRIAL = dict(kind="at_init", criterion="snip", p=3, seed=0)  # in the grid, never run
REFERENCE = {  # a reference file in the paper's format for this setting
    "tables": {2: {"title": "at init", "arch": "resnet20", "dataset": "digits"},
               4: {"title": "efficiency", "dataset": "digits", "criterion": "grasp"}},
    "values": [{"table": 2, "row": "grasp", "column": "p=1", "value": -0.5},
               {"table": 2, "row": "snip", "column": "p=3", "value": 0.25},
               {"table": 4, "row": "resnet20 p=1", "column": "flops", "value": 6.82}],
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps") / "tiny"
    store = SweepStore(root)
    for trial in TRIALS:
        config = TrialConfig.from_dict(BASE | trial | {"dense_dir": str(root / "dense")})
        store.save(run_trial(config) | {"trial_id": config.hash()})
    config = TrialConfig.from_dict(BASE | ERRORED)
    errored = {"trial_id": config.hash(), "status": "errored", "error": "Traceback\nRuntimeError: boom"}
    store.save(config.to_dict() | errored)  # what the sweep stores for a trial that failed every attempt
    store.write_table()
    grid = root.parent / "tiny.yaml"
    grid.write_text(yaml.safe_dump({"name": "tiny", "defaults": BASE, "studies": TRIALS + [ERRORED, MISSING_TRIAL]}))
    paper = root.parent / "reference.yaml"
    paper.write_text(yaml.safe_dump(REFERENCE))
    built = report.build([root], grid=str(grid), paper=str(paper))
    return {"root": root, "built": built, "rows": store.rows(), "paper": paper}


def finished(rows, **match):
    return [r for r in rows if r.get("status") == "finished" and all(r.get(k) == v for k, v in match.items())]


def table(sweep, number):
    return {t.number: t for t in sweep["built"].tables}[number]


def test_accuracy_cells_are_mean_and_std_over_seeds_against_dense(sweep):
    rows = sweep["rows"]
    dense = [r["final_test_acc"] for r in finished(rows, kind="dense")]
    grasp = [r["final_test_acc"] for r in finished(rows, kind="at_init", criterion="grasp", p=1)]
    cell = table(sweep, 2).cell(SETTING, "grasp", "p=1")
    assert cell.mean == pytest.approx(100 * (statistics.fmean(grasp) - statistics.fmean(dense)))
    assert cell.std == pytest.approx(100 * statistics.stdev(grasp)) and cell.n == 2
    single = table(sweep, 2).cell(SETTING, "snip", "p=1")
    assert single.n == 1 and single.std is None  # one seed: no std, not a zero one
    [kl] = finished(rows, kind="after_training")
    assert table(sweep, 1).cell(SETTING, "kl p=1", "theta_0").mean == pytest.approx(
        100 * (kl["final_test_acc"] - statistics.fmean(dense)))
    [filt] = finished(rows, kind="filter")
    assert table(sweep, 3).cell(SETTING, "filter grasp", "p=1").mean == pytest.approx(
        100 * (filt["final_test_acc"] - statistics.fmean(dense)))
    assert table(sweep, 3).cell(SETTING, "layer grasp", "p=1").mean == pytest.approx(cell.mean)


def test_efficiency_cells_from_macs_memory_co2_and_train_seconds(sweep):
    rows = sweep["rows"]
    dense = finished(rows, kind="dense")
    tickets = finished(rows, kind="at_init", criterion="grasp", p=1)
    t4 = table(sweep, 4)
    macs_cut = [100 * (1 - r["macs"] / r["dense_macs"]) for r in tickets]
    assert t4.cell(SETTING, "grasp p=1", "flops").mean == pytest.approx(statistics.fmean(macs_cut))
    assert 0 < macs_cut[0] < 100
    dense_memory = statistics.fmean(r["memory_bytes"] for r in dense)
    assert t4.cell(SETTING, "grasp p=1", "memory").mean == pytest.approx(
        statistics.fmean(100 * (1 - r["memory_bytes"] / dense_memory) for r in tickets))
    dense_epoch = statistics.fmean(r["train_seconds"] / r["epochs_trained"] for r in dense)
    speedups = [dense_epoch / (r["train_seconds"] / r["epochs_trained"]) for r in tickets]
    measured = t4.cell(SETTING, "grasp p=1", "speedup")
    assert measured.mean == pytest.approx(statistics.fmean(speedups))
    assert measured.std == pytest.approx(statistics.stdev(speedups))
    ideal = t4.cell(SETTING, "grasp p=1", "ideal_speedup")
    assert ideal.mean == pytest.approx(tickets[0]["dense_macs"] / tickets[0]["macs"]) and ideal.mean > 1
    # CO2: only the seed-0 ticket and dense were tracked; codecarbon without RAPL is flagged as estimated
    [dense_co2] = [r["co2_kg"] for r in dense if r["co2_kg"] is not None]
    [ticket_co2] = [r["co2_kg"] for r in tickets if r["co2_kg"] is not None]
    co2 = t4.cell(SETTING, "grasp p=1", "co2")
    assert co2.mean == pytest.approx(100 * (1 - ticket_co2 / dense_co2)) and co2.n == 1
    if "estimated" in str(tickets[0]["emissions_method"]):
        assert co2.flag == "*" and any("energy model" in note for note in t4.notes)


def test_paper_values_beside_ours_and_missing_cells_print_a_dash(sweep):
    t2 = table(sweep, 2)
    cell = t2.cell(SETTING, "grasp", "p=1")
    assert cell.paper == -0.5 and cell.agrees == (cell.mean < 0)
    assert t2.cell(SETTING, "snip", "p=1").paper is None  # the reference has no value there
    gap = t2.cell(SETTING, "snip", "p=3")  # the grid's trial that never ran: '-', the paper's value beside
    assert gap.mean is None and gap.paper == 0.25 and gap.agrees is None
    assert t2.cell(SETTING, "grasp", "p=3").paper is None
    markdown = (sweep["built"].directory / "table2.md").read_text()
    snip_line = next(line for line in markdown.splitlines() if "| snip |" in line)
    assert snip_line.endswith("| - · paper +0.25 |") and "paper -0.50" in markdown
    assert table(sweep, 4).cell(SETTING, "grasp p=1", "flops").paper == 6.82
    assert table(sweep, 4).cell(SETTING, "snip p=1", "flops").paper is None  # the reference's row is GraSP's
    lines = (sweep["built"].directory / "table2.csv").read_text().splitlines()
    assert lines[0].startswith("table,setting,row,column,mean,std,n") and len(lines) == 1 + 2 * 2
    latex = (sweep["built"].directory / "table2.tex").read_text()
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"$\pm$" in latex


def test_table5_says_robustness_is_missing_until_rows_carry_it(sweep):
    assert any("no result row carries robustness columns" in note for note in table(sweep, 5).notes)
    assert "robustness" in dict(sweep["built"].skipped)


def test_table5_fills_from_robustness_columns_and_keeps_generated_corruptions_apart(sweep):
    rows = [dict(r) for r in sweep["rows"]]
    for r in rows:  # accuracies as the robustness evaluation writes them (fractions, like final_test_acc)
        if r.get("status") == "finished":
            shift = 0.01 * r["seed"] + (0.02 if r["kind"] == "at_init" else 0.0)
            r |= {"acc_cifar10c": 0.5 + shift, "cifar10c_source": "generated" if r["seed"] else "archive",
                  "acc_cifar102": 0.6 + shift, "acc_fgsm": 0.1 + shift, "acc_pgd": 0.05 + shift}
    reference = load_reference(sweep["paper"])
    reference.tables[5] = {"dataset": "digits", "criterion": "grasp"}
    reference.values[(5, "resnet20 p=1", "cifar10c")] = 1.0
    t5 = table5(rows, reference)
    archive = t5.cell(SETTING, "grasp p=1", "cifar10c")  # seed 0 of ticket and dense only
    assert archive.mean == pytest.approx(2.0) and archive.n == 1 and archive.paper == 1.0 and archive.agrees
    generated = t5.cell(SETTING, "grasp p=1", "corruptions_generated")
    assert generated.mean == pytest.approx(2.0) and generated.paper is None
    assert "not CIFAR-10-C" in t5.columns["corruptions_generated"]
    shifted = t5.cell(SETTING, "grasp p=1", "cifar102")
    assert shifted.mean == pytest.approx(2.0) and shifted.n == 2
    from layerlth.analysis.plots import robustness

    assert robustness(t5) is not None


def test_every_plot_is_written_as_png_and_pdf(sweep):
    built = sweep["built"]
    assert set(built.plots) == {"diff_vs_p", "curves", "speedup", "emissions", "removed_blocks"}
    for name in built.plots:
        for suffix in ("png", "pdf"):
            path = built.directory / "plots" / f"{name}.{suffix}"
            assert path.stat().st_size > 5000, path


def test_html_is_self_contained_with_every_table_figure_and_the_provenance(sweep):
    page = sweep["built"].html.read_text()
    for number in range(1, 6):
        assert f'id="table{number}"' in page
    assert page.count("data:image/png;base64,") == len(sweep["built"].plots)
    assert "src=\"http" not in page and "<link" not in page and "<script" not in page
    assert "tiny.yaml" in page and "errored: 1" in page and "finished: 8" in page
    assert "RuntimeError: boom" in page and "resnet20 at_init snip p=3 seed 0" in page  # errored, missing
    assert "cpu_load" in page or "rapl" in page  # the emissions method
    assert "torch" in page and "git commit" in page


def test_wandb_spec_names_the_group_and_panels_and_builds_offline(sweep, capsys):
    spec = json.loads(sweep["built"].spec.read_text())
    assert spec["group"] == "tiny" and spec["runset"]["filters"] == "Group = 'tiny'"
    assert spec["runset"]["groupby"] == ["config.kind", "config.criterion", "config.p", "config.rounds"]
    panels = {p["type"]: p for p in spec["panels"]}
    assert panels["LinePlot"]["y"] == ["test_acc"]
    assert {m for p in spec["panels"] for m in p.get("metrics", [])} >= {"final_test_acc", "co2_kg"}
    assert len(spec["tables"]) == 5 and "Table 4" in spec["tables"][3]
    built = wandb_report.build_report(spec)  # the wandb_workspaces Report, without a network
    assert built.blocks[1].runsets[0].filters == "Group = 'tiny'"
    assert len(built._to_model().spec.blocks) >= 5
    message = report.share(sweep["built"].spec, wanted=True)  # WANDB_MODE=offline: nothing is sent
    assert "publish later with `layerlth report --publish" in message


def test_publish_gives_up_on_a_dead_network(monkeypatch):
    import threading

    release = threading.Event()
    monkeypatch.setattr(wandb_report, "build_report", lambda spec, entity: release.wait(30))
    spec = {"entity": "someone", "project": "p"}
    with pytest.raises(TimeoutError):
        wandb_report.publish(spec, timeout=0.2)
    release.set()


def test_a_results_table_gives_the_same_cells_as_the_result_files(sweep):
    reference = load_reference(sweep["paper"])
    from_csv = table2(read_rows([sweep["root"] / "results.csv"]), reference)
    for label, column in (("grasp", "p=1"), ("snip", "p=1"), ("grasp", "p=3")):
        assert from_csv.cell(SETTING, label, column).mean == pytest.approx(
            table(sweep, 2).cell(SETTING, label, column).mean)


def test_report_command_and_manual(sweep, tmp_path, capsys):
    from layerlth.cli import main

    main(["report", str(sweep["root"] / "results.csv"), "--out", str(tmp_path / "r"), "--quiet"])
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'r' / 'report.html'}" in out and (tmp_path / "r" / "report.html").is_file()
    assert "figure curves skipped" in out  # a results table holds no per-epoch curves
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path / "nowhere")])
    assert exit_.value.code == 2 and "nowhere" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "Table" in capsys.readouterr().out


def test_paper_yaml_holds_every_value_of_tables_1_to_5():
    reference = load_reference(PAPER)
    counts = {n: sum(1 for key in reference.values if key[0] == n) for n in range(1, 6)}
    assert counts == {1: 20, 2: 10, 3: 4, 4: 28, 5: 14}
    assert reference.values[(1, "kl", "theta_0")] == 0.74 and reference.values[(2, "grasp", "p=2")] == 0.72
    assert reference.values[(3, "filter snip", "p=1")] == -0.79
    assert reference.values[(4, "resnet56 p=12", "speedup")] == 2.03
    assert reference.values[(5, "resnet56 p=4", "cifar10c")] == 3.73


def test_paper_values_apply_only_to_the_papers_setting():
    reference = load_reference(PAPER)
    row = dict(arch="resnet32", dataset="cifar10", shortcut="B", recipe="paper", epochs=None, train_subset=None,
               rewind=0, reinit=False, status="finished")
    rows = [row | {"kind": "dense", "p": 0, "criterion": "grasp", "seed": s, "final_test_acc": a}
            for s, a in enumerate([0.925, 0.927])]
    rows += [row | {"kind": "at_init", "p": 1, "criterion": "grasp", "seed": 0, "final_test_acc": 0.93}]
    cell = table2(rows, reference).rows[0].cells["p=1"]
    assert cell.paper == 0.40 and cell.agrees
    other = [r | {"dataset": "cifar100"} for r in rows]
    assert table2(other, reference).rows[0].cells["p=1"].paper is None


def test_paper_quick_grid_runs_the_paper_studies_once_in_the_papers_columns():
    from layerlth.analysis.tables import rewind_column
    from layerlth.sweep.grid import expand, load_grid

    def studies(name):
        return {(c.kind, c.arch, c.criterion if c.p else None, c.p) for _, c in expand(load_grid(name))}

    quick, paper = expand(load_grid("paper-quick")), expand(load_grid("paper"))
    assert studies("paper-quick") == studies("paper") and len(quick) == len(paper) // 3
    assert {c.seed for _, c in quick} == {0} and {c.dataset for _, c in quick} == {"cifar10"}
    columns = {rewind_column(c.rewind, c.epochs) for _, c in quick if c.kind == "after_training"}
    assert columns == {"theta_0", "theta_25", "theta_50", "theta_75"}  # Table 1's columns


def test_iterative_tickets_get_their_own_row_and_figure_column_without_the_papers_value(sweep):
    from layerlth.analysis.plots import removed_blocks

    [one_shot] = finished(sweep["rows"], kind="at_init", criterion="grasp", p=3)
    iterative = one_shot | {"trial_id": "iterative", "rounds": 3, "final_test_acc": 0.5,
                            "removed": ["stage3.block2", "stage1.block2", "stage2.block3"]}
    rows = sweep["rows"] + [iterative]
    built = table2(rows, load_reference(sweep["paper"]))
    cells = {r.label: r.cells for r in built.rows if r.setting == SETTING}
    dense = statistics.fmean(r["final_test_acc"] for r in finished(rows, kind="dense"))
    assert cells["grasp k=3"]["p=3"].mean == pytest.approx(100 * (0.5 - dense))
    assert cells["grasp"]["p=3"].mean == pytest.approx(100 * (one_shot["final_test_acc"] - dense))
    assert cells["grasp"]["p=1"].paper == -0.5 and "p=1" not in cells["grasp k=3"]  # the paper's is one shot
    labels = [t.get_text() for t in removed_blocks(rows).axes[0].get_xticklabels()]
    assert labels.index("grasp p=3 k=3") == labels.index("grasp p=3") + 1


def test_verdict_reads_every_kind_of_path_a_sweep_leaves_and_gives_what_the_sweep_printed(sweep, tmp_path, capsys,
                                                                                           caplog):
    import shutil

    from layerlth.analysis.summary import summary
    from layerlth.cli import main
    from layerlth.tickets.verdict import format_verdicts, verdicts

    root = tmp_path / "results" / "sweeps" / "tiny"
    shutil.copytree(sweep["root"], root)
    ray_dir = root / "tune" / "sweep-1" / "abc"  # Ray Tune's JSON-lines log, beside a sweep's records
    ray_dir.mkdir(parents=True)
    (ray_dir / "result.json").write_text('{"training_iteration": 1}\n{"training_iteration": 2}\n')
    printed = format_verdicts(verdicts(sweep["rows"]))
    assert printed in summary(sweep["rows"]) and printed.count("\n") == 5  # what the sweep printed
    for path in (tmp_path / "results", root.parent, root, root / "trials", root / "results.csv",
                 root / "results.parquet"):
        main(["verdict", str(path)])
        assert capsys.readouterr().out.strip() == printed.strip(), path
    for path in (root / "tune", ray_dir / "result.json"):  # Ray's files only: named, never a bare JSON error
        with pytest.raises(SystemExit) as exit_:
            main(["verdict", str(path)])
        error = capsys.readouterr().err
        assert exit_.value.code == 2 and str(path) in error and "Extra data" not in error.splitlines()[-1]
    assert "skipped 1 files that are not trial records" in caplog.text and str(ray_dir) in caplog.text


def test_verdict_finds_the_dense_run_a_ticket_stored_for_itself(sweep, tmp_path, capsys):
    """What `layerlth ticket` leaves: the ticket's record in results/trials/, its dense run only in
    results/dense/ (no dense trial reports it)."""
    import shutil

    from layerlth.cli import main

    [ticket] = [r for r in sweep["rows"] if r.get("kind") == "after_training"]
    (tmp_path / "results" / "trials" / ticket["trial_id"]).mkdir(parents=True)
    (tmp_path / "results" / "trials" / ticket["trial_id"] / "result.json").write_text(json.dumps(ticket))
    shutil.copytree(sweep["root"] / "dense", tmp_path / "results" / "dense")
    main(["verdict", str(tmp_path / "results")])
    [line] = [line for line in capsys.readouterr().out.splitlines() if "after_training" in line]
    assert "kl" in line and "±" in line
