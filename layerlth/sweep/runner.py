"""Runs a grid on Ray Tune without a phase barrier: dense, at-init and filter trials start at once,
and each after-training ticket as soon as its own dense run is stored (`dense_gate.DenseRunGate`),
so that none is trained twice and no slot waits for a dense run it does not read.

Results live in `<storage>/<name>/`, a local directory or an object store URI that every node
reaches: `trials/<trial hash>/result.json` (the record that makes a relaunch skip a finished
trial), `results.csv` / `results.parquet` (rebuilt as trials finish), `dense/` (the shared dense
runs), `tune/` (Ray's experiments and the trials' weights-only checkpoints) and, on local storage,
`wandb/` (offline W&B runs). One driver at a time holds a sweep: a file lock on local storage
(`.driver.lock`), a lease with a heartbeat on an object store (`.driver-lease.json`).

Resuming reads nothing that Ray pickled: the work still to do is rebuilt from the grid and the
stored records (plain JSON), and relaunched as a new Tune experiment, in which each trial continues
from the newest checkpoint it left under `tune/` (tensors and plain data, `tune.trainable.resume_state`).
`--resume` and a plain relaunch are the same; the flag only reports what is resumed.
"""

import logging
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pandas as pd

from layerlth.analysis.summary import summary as trial_summary
from layerlth.foundations.config import DEFAULT_DENSE_DIR, TrialConfig
from layerlth.foundations.storage import Storage, is_uri
from layerlth.search.core import summary as search_summary
from layerlth.search.report import format_summary, grid_configs, price_table, save_summaries, with_cost
from layerlth.search.specs import searches
from layerlth.sweep.estimate import dry_run_table
from layerlth.sweep.grid import GridError, check_data, expand, failing_trials, load_grid
from layerlth.sweep.jobs import flops_duration, jobs, schedule_table
from layerlth.sweep.late_similarity import fill_similarity
from layerlth.sweep.lease.driver import one_driver
from layerlth.sweep.store import StoreFailed, SweepStore
from layerlth.sweep.tracking import resolve_mode

log = logging.getLogger("layerlth")
DEFAULT_STORAGE = "results/sweeps"


def prepare(entries, args, root):
    """Per-sweep settings that do not change a trial's identity: dense store, device, GPU share."""
    share = args.gpus_per_trial if 0 < args.gpus_per_trial < 1 else 1.0
    prepared = []
    for label, config in entries:
        changes = {"gpu_share": share}
        if config.dense_dir == DEFAULT_DENSE_DIR:
            changes["dense_dir"] = (Storage(args.dense_dir) if args.dense_dir else root.child("dense")).location
        if config.device == "auto" and not args.gpus_per_trial:
            changes["device"] = "cpu"
        if args.country:
            changes["country"] = args.country
        if getattr(args, "workers", None):
            changes["workers"] = args.workers
        if getattr(args, "fuse", None):
            changes["fuse"] = {"auto": "auto", "true": True, "false": False}[args.fuse]
        try:  # the same checks as the grid's values (a bad --country is named here)
            prepared.append((label, TrialConfig.from_dict(config.to_dict() | changes)))
        except ValueError as error:
            raise GridError(f"{label}: {error}") from error
    return prepared


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
    workers = getattr(args, "most_workers", 1)
    for name, need in (("CPU", args.cpus_per_trial * workers), ("GPU", args.gpus_per_trial * workers)):
        if need and available.get(name, 0) < need:
            raise GridError(f"a trial needs {need:g} {name} ({workers} workers) but the Ray cluster has "
                            f"{available.get(name, 0):g}")


def trial_params(args, root):
    """`params(label, config)`: the Tune config of a trial of this sweep."""
    sweep = {"name": args.name, "root": root.location, "checkpoint_every": args.checkpoint_every,
             "wandb_mode": args.wandb_mode, "wandb_project": args.wandb_project, "wandb_entity": args.wandb_entity,
             # a trial with workers > 1: what each of its Ray Train workers holds, and their restarts
             "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
             "worker_failures": args.max_failures}

    def params(label, config):
        return {"point": {"id": config.hash(), "label": label, "trial": config.to_dict(),
                          "test_fail": args.test_fail.get(config.hash())}, "sweep": sweep}
    return params


def run_sweep(job_list, args, root, store):
    """The studies' trials: one new Tune experiment, gated on dense runs (`dense_gate`)."""
    from layerlth.sweep.tune.dense_gate import DenseRunGate

    params = trial_params(args, root)
    gate = DenseRunGate(job_list, [params(job.label, job.config) for job in job_list])
    run_experiment(gate, len(job_list), args, root, store)


def run_searches(search_list, args, root, store):
    """The depth searches' trials: one new Tune experiment whose searcher replays each search."""
    from layerlth.sweep.tune.depth_searcher import DepthSearcher

    searcher = DepthSearcher(search_list, store, trial_params(args, root))
    if searcher.pending():  # a search whose every trial is stored needs no Ray
        start_ray(args)
        run_experiment(searcher, sum(len(grid_configs(s)) for s in search_list), args, root, store)
    return searcher


def run_experiment(searcher, num_samples, args, root, store):
    """One new Tune experiment; interrupted trials continue from their checkpoints. With
    --trials-per-gpu k > 1 each Tune trial is a pack (`packs`) fed by the same searcher."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from layerlth.sweep.tune.callbacks import StopWhenStoreFails, StoreResults, failures
    from layerlth.sweep.tune.trainable import trainable

    failures(store.root).clear()
    tune_dir = root.child("tune")
    if args.trials_per_gpu > 1:
        from layerlth.sweep.tune.packs import Mailbox, PackSearcher, pack_trainable

        name = f"layerlth-mailbox-{uuid.uuid4().hex[:8]}"
        mailbox = Mailbox.options(name=name).remote()  # noqa: F841 - held by name for the experiment
        searcher = PackSearcher(searcher, args.trials_per_gpu, name, store, args.max_failures)
        trainable = pack_trainable
        num_samples *= args.max_failures + 1  # a pack holds at least one member, and a retry may need its own
    resources = tune.with_resources(trainable, trial_resources(args))
    callbacks = [StoreResults(store), JsonLoggerCallback(), CSVLoggerCallback()]
    tuner = tune.Tuner(
        resources,
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=num_samples,
            max_concurrent_trials=args.max_concurrent or None,
            reuse_actors=args.reuse_workers,  # a worker's start-up (seconds) paid once, not per trial
            trial_name_creator=trial_name, trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=experiment_name("sweep"), storage_path=tune_dir.location, callbacks=callbacks,
            verbose=args.verbose, stop=StopWhenStoreFails(store.root),
            progress_reporter=status_table(),
            # a pack retries its members itself (`packs.PackSearcher`); a pack that dies is not rerun whole
            failure_config=tune.FailureConfig(max_failures=0 if args.trials_per_gpu > 1 else args.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    tuner.fit()
    check_store(store)


def trial_resources(args):
    """What a Tune trial holds: --cpus/gpus-per-trial; nothing for one with workers > 1, whose Ray
    Train workers each hold that much instead (a function of the trial only where the grid has such
    trials: Tune places trials of a fixed request across a cluster's nodes as it always did)."""
    plain = {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial}
    if getattr(args, "most_workers", 1) == 1:
        return plain

    def resources(config):
        point = config.get("point") or {}
        return {"cpu": 0, "memory": 1} if point.get("trial", {}).get("workers", 1) > 1 else plain
    return resources


def check_workers(entries, args):
    """A trial with more workers than this machine (or the cluster) holds is refused before any runs."""
    most = max([c.workers for _, c in entries] or [1])
    args.most_workers = most
    if most == 1:
        return
    if args.trials_per_gpu != 1:
        raise GridError(f"--trials-per-gpu {args.trials_per_gpu} packs small trials; this grid has trials with "
                        f"workers={most}, which are never packed: run them in a sweep of their own")
    if args.gpus_per_trial and args.gpus_per_trial != 1:
        raise GridError(f"a trial with workers > 1 takes one whole GPU per worker; --gpus-per-trial "
                        f"{args.gpus_per_trial} must be 0 or 1")
    if args.address:
        return  # the cluster's resources are checked once Ray joins it (check_cluster)
    import torch

    cpus = args.num_cpus or os.cpu_count() or 1
    if most * args.cpus_per_trial > cpus or (args.gpus_per_trial and most > torch.cuda.device_count()):
        have = f"{torch.cuda.device_count()} GPUs" if args.gpus_per_trial else f"{cpus} CPUs"
        raise GridError(f"a trial asks for workers={most}, each holding {args.cpus_per_trial:g} CPU"
                        f"{' and 1 GPU' if args.gpus_per_trial else ''}, but this machine has {have}; use fewer "
                        f"workers or --address a cluster")


def trial_name(trial):
    if "pack" in trial.config:
        return f"pack-{trial.trial_id}"
    return f"{trial.config['point']['trial']['kind']}-{trial.config['point']['id']}"


def trial_dirname(trial):
    return f"pack-{trial.trial_id}" if "pack" in trial.config else trial.config["point"]["id"]


def resolve_trials_per_gpu(args, entries):
    """--trials-per-gpu auto: the most trials per device measured for this device's kind and the
    grid's architectures (`measured_throughput.json`, written by benchmarks/gpu_suite.py); 1 where
    nothing was measured (a CPU: packing only steps trials one after another there)."""
    if args.trials_per_gpu != "auto":
        return args.trials_per_gpu
    from layerlth.sweep.estimate import Throughput, device_kind, measured_throughput

    device = "cuda" if args.gpus_per_trial else "cpu"
    entry = measured_throughput().get(device_kind(device)) if device == "cpu" or _cuda() else None
    if not entry or not entry.get("packing"):
        return 1
    rate = Throughput(device_kind(device), entry)
    return max(rate.packed(arch)[0] for arch in {c.arch for _, c in entries}) if entries else 1


def _cuda():
    import torch

    return torch.cuda.is_available()


def experiment_name(phase):
    """Unique, not just to the second: two experiments never share (and prune) a folder."""
    return f"{phase}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


def check_store(store):
    """Raise StoreFailed, naming what was not written, when the store could not write during the phase."""
    from layerlth.sweep.tune.callbacks import failures

    failed = failures(store.root)
    if failed:
        lines = "\n".join(f"  {what}: {error}" for what, error in failed)
        raise StoreFailed(f"the sweep stopped: writing to {store.root} failed\n{lines}\nEvery stored record is "
                          f"intact; trials whose record is missing run again. Free the space (or fix the "
                          f"mount), then relaunch with --resume.")


def resume_note(todo, root):
    """What --resume picks up: the trials to run and how many left checkpoints (names only, no load)."""
    left = {name.split("/")[2] for name in root.glob("tune/*/*/checkpoint_*/state.pt")}
    left |= {name.split("/")[1] for name in root.glob("checkpoints/*/state.pt")}  # pack members' own
    started = sum(job.config.hash() in left for job in todo)
    return (f"resuming {root.location}: {len(todo)} trials to run in a new Tune experiment, {started} of them "
            f"from the newest checkpoint they left under tune/")


def report_searches(searcher, store):
    """Each search's p* and cost, printed and kept in `searches.json`; a failed search says why."""
    from layerlth.sweep.tune.depth_searcher import search_tag

    found = []
    for search in searcher.searches:
        if search.label in searcher.failed:
            print(f"{search.label}: stopped: {searcher.failed[search.label]}")
            continue
        found.append(with_cost(search, search_summary(search, searcher.records)
                               | {"trained_now": searcher.asked[search.label], "wandb_tag": search_tag(search)}))
        print(format_summary(found[-1]))
    save_summaries(store, found)


def record_unrun(job_list, store):
    """Tickets whose dense run never got stored (its dense trial errored) get an errored record."""
    for job in job_list:
        if job.needs and store.result(job.config.hash()) is None:
            store.save({**job.config.to_dict(), "trial_id": job.config.hash(), "status": "errored",
                        "error": f"not run: its dense run {job.needs} was not stored (its dense trial errored)"})


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
    root = Storage(args.results_dir or (f"{storage.rstrip('/')}/{args.name}" if is_uri(storage)
                                        else Path(storage) / args.name))
    entries = expand(grid)
    search_list = searches(grid)
    bases = [s.base for s in search_list]
    check_data([c for c in [c for _, c in entries] + bases if c.dataset.endswith(".npz")])  # the dry run reads them
    if args.dry_run:
        if entries:
            print(f"grid {args.grid}: {len(entries)} trials")
            print(dry_run_table(entries, args.assumed_tflops))
            if args.slots:
                print(schedule_table(entries, args.slots, flops_duration(args.assumed_tflops)))
        if search_list:
            print(price_table(search_list))
        return 0
    check_resources(args)
    args.trials_per_gpu = resolve_trials_per_gpu(args, entries)
    if args.trials_per_gpu > 1:
        print(f"packing up to {args.trials_per_gpu} trials per Tune trial (--trials-per-gpu)")
    check_data([c for c in [c for _, c in entries] + bases if not c.dataset.endswith(".npz")])
    args.wandb_mode = resolve_mode(args.wandb)
    failing = failing_trials(grid)
    prepared = prepare(entries, args, root)
    args.test_fail = {new.hash(): failing[old.hash()] for (_, old), (_, new) in zip(entries, prepared)
                      if old.hash() in failing}
    entries = prepared
    check_workers(entries, args)
    search_list = [replace(s, base=prepare([(s.label, s.base)], args, root)[0][1]) for s in search_list]
    store = SweepStore(root)
    print(f"sweep {args.name}: {len(entries)} trials; results in {store.csv_path}")
    with one_driver(root) as guard:  # a second driver would train every trial again
        job_list = jobs(entries)
        todo = [job for job in job_list if not store.finished(job.config.hash())]
        print(f"{len(job_list)} trials: {len(job_list) - len(todo)} already finished, {len(todo)} to run")
        if args.resume:
            print(resume_note(todo, root))
        if todo:
            start_ray(args)
            run_sweep(todo, args, root, store)
            guard.check()  # a driver that lost its lease leaves the records to the one holding it
            record_unrun(todo, store)
        shown = [c.hash() for _, c in entries]
        if search_list:
            searcher = run_searches(search_list, args, root, store)
            guard.check()
            report_searches(searcher, store)
            shown += [h for h in searcher.records.known if h not in shown]  # stored or run now
        filled = fill_similarity(store, {c.arch for _, c in entries} | {s.base.arch for s in search_list})
        if filled:
            print(f"cka_vs_dense filled in for {filled} tickets that finished before their dense run")
        frame = store.write_table()
    print(summary(store, shown))
    print(f"results: {store.csv_path} (and results.parquet)")
    # a ticket stopped early by a depth search is a verdict, not a failure
    return 0 if frame.get("status", pd.Series(dtype=str)).isin(["finished", "stopped_early"]).all() else 1


def driver_environment():
    """Ray and Tune settings of a sweep's driver, unless the user set them: set before ray.init."""
    defaults = {
        "RAY_AUTH_MODE": "disabled",
        "RAY_AIR_NEW_OUTPUT": "0",  # the concise table of status_table()
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # run_sweep adds the JSON/CSV loggers, not TensorBoard
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # small trials checkpoint often
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


def start_ray(args):
    import ray

    if ray.is_initialized():
        return
    driver_environment()
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
