"""The sweep as a W&B report (wandb-workspaces' Report API): test-accuracy curves grouped by kind,
criterion and p, final accuracy, CO2 and speed panels over the sweep's runs (W&B group = sweep
name), and the tables as markdown.

The report is first a plain JSON spec, written beside the HTML report; publishing turns the spec
into a `wandb_workspaces` Report and saves it. Publishing runs in a thread with a deadline, so a
dead network costs at most PUBLISH_TIMEOUT seconds and never blocks the report."""

import threading

from layerlth.sweep.tracking import resolve_mode

PUBLISH_TIMEOUT = 60
# rounds: one-shot and iterative tickets are never averaged together (runs logged before the option
# existed have no config.rounds and form their own group)
GROUP_BY = ["config.kind", "config.criterion", "config.p", "config.rounds"]
PANELS = [  # what the trials log: per-epoch metrics (x = epoch) and the summary of tracking.finish_run
    {"type": "LinePlot", "title": "Test accuracy per epoch (mean over seeds of each kind, criterion, p)",
     "x": "epoch", "y": ["test_acc"], "groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"},
    {"type": "BarPlot", "title": "Final test accuracy", "metrics": ["final_test_acc"],
     "groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"},
    {"type": "BarPlot", "title": "CO2 per trial (kg; a model's estimate where emissions_method says 'estimated')",
     "metrics": ["co2_kg"], "groupby_aggfunc": "mean"},
    {"type": "BarPlot", "title": "Training throughput (images/s): speed-up = ticket / dense",
     "metrics": ["images_per_second"], "groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"},
    {"type": "ScatterPlot", "title": "Training seconds vs MACs", "x": "macs", "y": "train_seconds"},
]


def report_spec(sweep, tables_markdown, project="layerlth", entity=None):
    """The report as JSON-friendly data: which runs (project, group), which panels, which tables."""
    return {
        "title": f"layerlth sweep {sweep}: the paper's tables side by side"[:128],
        "description": f"Runs of W&B group {sweep!r}; tables built by `layerlth report` from the sweep's results.",
        "project": project, "entity": entity, "group": sweep,
        "runset": {"name": sweep, "filters": f"Group = '{sweep}'", "groupby": GROUP_BY},
        "panels": PANELS,
        "tables": list(tables_markdown),
    }


def build_report(spec, entity=None):
    """The spec as a `wandb_workspaces` Report object. Needs no network while no entity is set."""
    import wandb_workspaces.reports.v2 as wr

    entity = entity or spec.get("entity") or ""
    runset = wr.Runset(entity=entity, project=spec["project"], **spec["runset"])
    panels = [getattr(wr, p["type"])(**{k: v for k, v in p.items() if k != "type"}) for p in spec["panels"]]
    blocks = [wr.P(spec["description"]), wr.PanelGrid(runsets=[runset], panels=panels),
              wr.H2("Tables"), *[wr.MarkdownBlock(text=text) for text in spec["tables"]]]
    return wr.Report(project=spec["project"], entity=entity, title=spec["title"], description=spec["description"],
                     blocks=blocks)


def can_publish():
    return resolve_mode("auto") == "online"


def publish(spec, timeout=PUBLISH_TIMEOUT):
    """Save the report to W&B and return its URL; raises TimeoutError or the W&B error."""
    outcome = {}

    def work():
        try:
            import wandb

            entity = spec.get("entity") or wandb.Api(timeout=30).default_entity
            outcome["url"] = build_report(spec, entity).save().url
        except Exception as error:  # whatever W&B raises, reported to the caller
            outcome["error"] = error

    thread = threading.Thread(target=work, name="wandb-report", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"W&B did not answer within {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["url"]
