"""Runs a grid on Ray Tune in two phases: the dense runs first, then every ticket, so that
after-training tickets find their dense run stored and none is trained twice.

Results live in `<storage>/<name>/`: `trials/<trial hash>/result.json` (the record that makes a
relaunch skip a finished trial), `results.csv` / `results.parquet` (rebuilt as trials finish),
`dense/` (the shared dense runs), `tune/` (Ray's experiments, which `--resume` restores) and
`wandb/` (offline W&B runs). One driver at a time holds the directory (`.driver.lock`).
"""

import logging
import os
import time
import uuid
from pathlib import Path

from layerlth.config import DEFAULT_DENSE_DIR, TrialConfig
from layerlth.sweep.estimate import dry_run_table
from layerlth.sweep.grid import GridError, check_data, expand, load_grid, failing_trials
from layerlth.sweep.driver_lock import DriverLock
from layerlth.sweep.store import StoreFailed, SweepStore
from layerlth.sweep.tracking import resolve_mode
from layerlth.summary import summary as trial_summary

log = logging.getLogger("layerlth")
DEFAULT_STORAGE = "results/sweeps"


def is_uri(path):
    return "://" in str(path)


def prepare(entries, args, root):
    """Per-sweep settings that do not change a trial's identity: dense store, device, GPU share."""
    share = args.gpus_per_trial if 0 < args.gpus_per_trial < 1 else 1.0
    prepared = []
    for label, config in entries:
        changes = {"gpu_share": share}
        if config.dense_dir == DEFAULT_DENSE_DIR:
            changes["dense_dir"] = str(args.dense_dir or Path(root) / "dense")
        if config.device == "auto" and not args.gpus_per_trial:
            changes["device"] = "cpu"
        if args.country:
            changes["country"] = args.country
        try:  # the same checks as the grid's values (a bad --country is named here)
            prepared.append((label, TrialConfig.from_dict(config.to_dict() | changes)))
        except ValueError as error:
            raise GridError(f"{label}: {error}") from error
    return prepared


def phases(entries):
    """(dense trials plus the dense runs after-training tickets need, the ticket trials)."""
    dense = [(label, c) for label, c in entries if c.is_dense]
    keys = {c.dense_key() for _, c in dense}
    for label, config in entries:
        if config.kind == "after_training" and not config.is_dense and config.dense_key() not in keys:
            keys.add(config.dense_key())
            dense.append((f"dense run for {label}", config.dense_config()))
    tickets = [(label, c) for label, c in entries if not c.is_dense]
    return [("dense", dense), ("tickets", tickets)]


def check_resources(args):
    import torch

    cpus = os.cpu_count() or 1
    if args.cpus_per_trial <= 0 or (not args.address and args.cpus_per_trial > cpus):
        raise GridError(f"--cpus-per-trial {args.cpus_per_trial} must be in (0, {cpus}] on this machine")
    if args.gpus_per_trial < 0 or (args.gpus_per_trial > 1 and args.gpus_per_trial != int(args.gpus_per_trial)):
        raise GridError(f"--gpus-per-trial {args.gpus_per_trial}: use a fraction in (0, 1] or a whole number")
    if args.gpus_per_trial and not args.address and torch.cuda.device_count() == 0:
        raise GridError(f"--gpus-per-trial {args.gpus_per_trial} but this machine has no GPU; use 0 or --address")


def check_cluster(args):
    import ray

    available = ray.cluster_resources()
    for name, need in (("CPU", args.cpus_per_trial), ("GPU", args.gpus_per_trial)):
        if need and available.get(name, 0) < need:
            raise GridError(f"each trial needs {need} {name} but the Ray cluster has {available.get(name, 0)}")


def run_phase(phase, todo, args, root, store):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from layerlth.sweep.callbacks import StopWhenStoreFails, StoreResults, failures
    from layerlth.sweep.tune_trial import trainable

    failures(store.root).clear()
    tune_dir = Path(root) / "tune"
    latest = tune_dir / f"{phase}.latest"
    resources = tune.with_resources(trainable, {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial})
    callbacks = [StoreResults(store), JsonLoggerCallback(), CSVLoggerCallback()]
    path = tune_dir / latest.read_text() if latest.is_file() else None
    if args.resume and path and tune.Tuner.can_restore(str(path)):
        print(f"[{phase}] resuming {path}")
        tuner = tune.Tuner.restore(str(path), trainable=resources, resume_errored=True)
        tuner.fit()
        check_store(store)
        todo = [(label, c) for label, c in todo if not store.finished(c.hash())]
        if not todo:
            return
    name = experiment_name(phase)
    tune_dir.mkdir(parents=True, exist_ok=True)
    latest.write_text(name)
    sweep = {"name": args.name, "root": str(root), "checkpoint_every": args.checkpoint_every,
             "wandb_mode": args.wandb_mode, "wandb_project": args.wandb_project, "wandb_entity": args.wandb_entity}
    points = [{"id": c.hash(), "label": label, "trial": c.to_dict(), "test_fail": args.test_fail.get(c.hash())}
              for label, c in todo]
    tuner = tune.Tuner(
        resources,
        param_space={"point": tune.grid_search(points), "sweep": sweep},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=args.max_concurrent or None,
            trial_name_creator=lambda t: f"{t.config['point']['trial']['kind']}-{t.config['point']['id']}",
            trial_dirname_creator=lambda t: t.config["point"]["id"],
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(tune_dir), callbacks=callbacks, verbose=args.verbose,
            stop=StopWhenStoreFails(store.root),
            progress_reporter=status_table(),
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    tuner.fit()
    check_store(store)


def experiment_name(phase):
    """Unique, not just to the second: two experiments never share (and prune) a folder."""
    return f"{phase}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


def check_store(store):
    """Raise StoreFailed, naming what was not written, when the store could not write during the phase."""
    from layerlth.sweep.callbacks import failures

    failed = failures(store.root)
    if failed:
        lines = "\n".join(f"  {what}: {error}" for what, error in failed)
        raise StoreFailed(f"the sweep stopped: writing to {store.root} failed\n{lines}\nEvery stored record is "
                          f"intact; trials whose record is missing run again. Free the space (or fix the "
                          f"mount), then relaunch with --resume.")


def status_table():
    """Ray's live status table, one line per trial: which trial, its epoch and accuracy."""
    from ray import tune

    return tune.CLIReporter(
        parameter_columns={"point/label": "trial"},
        metric_columns={"epoch": "epoch", "test_acc": "test acc", "final_test_acc": "final acc"},
        max_report_frequency=30, max_column_length=60,
    )


def run(args):
    grid = load_grid(args.grid)
    args.name = args.name or grid["name"]
    storage = args.storage or str(Path(DEFAULT_STORAGE).resolve())
    if is_uri(storage) and not args.results_dir:
        raise GridError(f"--storage {storage} is remote: also give --results-dir, a directory the driver writes")
    root = Path(args.results_dir or Path(storage) / args.name).resolve()
    entries = expand(grid)
    check_data([c for _, c in entries if c.dataset.endswith(".npz")])  # cheap, and the dry run reads them
    if args.dry_run:
        print(f"grid {args.grid}: {len(entries)} trials")
        print(dry_run_table(entries, args.assumed_tflops))
        return 0
    check_resources(args)
    check_data([c for _, c in entries if not c.dataset.endswith(".npz")])
    args.wandb_mode = resolve_mode(args.wandb)
    failing = failing_trials(grid)
    prepared = prepare(entries, args, root)
    args.test_fail = {new.hash(): failing[old.hash()] for (_, old), (_, new) in zip(entries, prepared)
                      if old.hash() in failing}
    entries = prepared
    store = SweepStore(root)
    with DriverLock(root):
        print(f"sweep {args.name}: {len(entries)} trials; results in {store.csv_path}")
        return run_phases(entries, args, root, store)


def run_phases(entries, args, root, store):
    start_ray(args)
    for phase, trials in phases(entries):
        todo = [(label, c) for label, c in trials if not store.finished(c.hash())]
        print(f"[{phase}] {len(trials)} trials: {len(trials) - len(todo)} already finished, {len(todo)} to run")
        if todo:
            run_phase(phase, todo, args, root, store)
    frame = store.write_table()
    print(summary(store, [c.hash() for _, c in entries]))
    print(f"results: {store.csv_path} (and results.parquet)")
    return 0 if (frame.get("status") == "finished").all() else 1


def start_ray(args):
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    quiet = {
        "RAY_AIR_NEW_OUTPUT": "0",  # the concise table of status_table()
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # run_phase adds the JSON/CSV loggers, not TensorBoard
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # small trials checkpoint often
    }
    for name, value in quiet.items():
        os.environ.setdefault(name, value)
    if args.address:
        ray.init(address=args.address)
        check_cluster(args)
    else:
        # local workers import the driver's layerlth, not another one installed in the environment
        import layerlth

        source = str(Path(layerlth.__file__).resolve().parents[1])
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)


def summary(store, trial_ids):
    wanted = set(trial_ids)
    return trial_summary([r for r in store.rows() if r["trial_id"] in wanted])
