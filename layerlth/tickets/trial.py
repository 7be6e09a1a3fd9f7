"""One trial as a plain function: config -> dense net at a seed -> ticket (scores, surgery) ->
training -> measurements -> result row. `kind` says which ticket; p = 0 is the dense baseline."""

import contextlib
import logging
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from layerlth.data import Batches, load_dataset
from layerlth.foundations.atomic import write_json_atomic
from layerlth.foundations.config import TrialConfig
from layerlth.foundations.recipes import training_recipe
from layerlth.measure.costs import count_macs, count_params, training_step_bytes
from layerlth.measure.emissions import EnergySplit, over_attempts
from layerlth.measure.robustness import robustness_columns
from layerlth.measure.similarity import representation_cka
from layerlth.models import build_for_images
from layerlth.tickets import procedures as tickets
from layerlth.tickets.dense_runs import DenseRun
from layerlth.tickets.early_stop import EarlyStop
from layerlth.tickets.validate import pick_device, validate
from layerlth.training.boundary import EnergyTerms, RunTerms
from layerlth.training.fastpath import choose as choose_fast_path
from layerlth.training.fastpath import fused
from layerlth.training.loop import Run, SaveWeights, compile_for_training, log_progress
from layerlth.training.packs.pack import run_alone
from layerlth.training.parallel import active as active_parallel
from layerlth.training.parallel import leads

log = logging.getLogger("layerlth")
def run_trial(config, callbacks=(), resume=None):
    """Run one trial; return a JSON-friendly dict. `callbacks` see every epoch (`EpochState`).

    `resume` continues an interrupted trial from a checkpoint: {"model": the module, "optimizer":
    its state_dict, "epoch": epochs completed, "history": their metrics, "context": the ticket's
    facts}; the ticket is then not rebuilt, and training goes on from that epoch.
    A trial alone is a pack of one (`layerlth.training.packs.pack`): `trial_work` trained by `run_alone`,
    its energy metered by codecarbon (`measure.emissions.EnergySplit`).
    """
    return run_alone(trial_work(config, callbacks, resume), energy=EnergySplit)


def trial_work(config, callbacks=(), resume=None):
    """`run_trial` as a generator a pack drives: it yields each `Run` it needs trained (a dense
    run first, for an after-training ticket whose dense run is not stored) and returns the row."""
    config = validate(TrialConfig.from_dict(config) if isinstance(config, dict) else config)
    device = pick_device(config.device)
    data = load_dataset(config.dataset, config.data_dir, config.image_size, config.data_workers, config.data_decode)
    data = data.to(device).subset(train=config.train_subset)  # views of one copy per device and process
    if config.is_dense:
        result = yield from dense_result(config, data, device, callbacks, resume)
        if config.robustness:  # on the stored final weights, whether trained now or reused
            result |= robustness_columns(config, trained_dense(config, data, device), data, device)
    else:
        result = yield from ticket_result(config, data, device, callbacks, resume)
    if config.out_dir and leads():
        write_json_atomic(result, Path(config.out_dir) / "result.json")
    return result


def initial_dense(config, data, device):
    torch.manual_seed(config.seed)
    return build_for_images(config.arch, data.num_classes, data.image_size, config.shortcut).to(device)


def trained_dense(config, data, device):
    """The dense net with its stored run's final weights."""
    run = DenseRun(config, training_recipe(config).epochs)
    return tickets.with_weights(initial_dense(config, data, device), run.weights(run.epochs, device))


def dense_result(config, data, device, callbacks=(), resume=None):
    """The dense baseline, trained once per dense key and stored; later calls read the store."""
    run = DenseRun(config, training_recipe(config).epochs)
    parallel, lead = active_parallel(), leads()  # data-parallel: rank 0 alone locks and writes the store
    with run.lock() if lead else contextlib.nullcontext():
        reused = run.complete() if parallel is None else parallel.decide(run.complete() if lead else None)
        if not reused:
            if lead:
                run.discard_result()  # incomplete until trained again: no one reads weights being rewritten
            initial = initial_dense(config, data, device)
            model = resume["model"].to(device) if resume else initial
            saving = [run.save_weights] if lead else []
            measured = yield from train_and_measure(model, initial, config.dense_config(), data, device, 0,
                                                    [*saving, *callbacks], resume)
            if lead:
                run.save_result(measured)
        stored = run.result() if lead or reused else measured
    return {**stored, **config.to_dict(), "trial_id": config.hash(), "removed": [], "scores": {},
            "dense_run": str(run.directory), "dense_reused": reused}


def ticket_result(config, data, device, callbacks=(), resume=None):
    dense = initial_dense(config, data, device)
    recipe = training_recipe(config)
    run = DenseRun(config, recipe.epochs)
    if config.kind == "after_training":
        yield from dense_result(config, data, device)  # trains the dense run only if no trial did before
    if resume:
        ticket, facts = resume["model"].to(device), resume["context"]
    else:
        ticket, facts = make_ticket(dense, run, config, data)
    stopper = EarlyStop(config, run, recipe.epochs)
    measured = yield from train_and_measure(ticket, dense, config, data, device, facts["start_epoch"],
                                            [stopper, *callbacks], resume, facts)
    if stopper.evidence:  # a loss, without the evaluations of a finished ticket
        return {**measured, **facts, "status": "stopped_early", "stop_evidence": stopper.evidence,
                "dense_run": str(run.directory)}
    facts["cka_vs_dense"] = similarity_to_dense(ticket, config, run, data, device)
    return {**measured, **facts, "dense_run": str(run.directory), **robustness_columns(config, ticket, data, device)}


def make_ticket(dense, run, config, data):
    started = time.perf_counter()
    if config.kind == "after_training":
        ticket, facts, start = tickets.after_training(dense, run, config, data)
    elif config.kind == "filter":
        ticket, facts, start = tickets.filter_ticket(dense, config, data)
    else:
        ticket, facts, start = tickets.at_init(dense, config, data)
    return ticket, {**facts, "start_epoch": start, "score_seconds": time.perf_counter() - started}


def similarity_to_dense(ticket, config, run, data, device):
    """Linear CKA of the trained ticket's and trained dense net's features on test images, when the
    dense run is stored (it always is for after-training tickets)."""
    if not run.complete():
        return None
    return representation_cka(ticket, trained_dense(config, data, device), Batches(data.subset(test=1024), 256, train=False))


def train_and_measure(model, dense, config, data, device, start_epoch=0, callbacks=(), resume=None, facts=None):
    """Yields the `Run` that trains `model` (a pack steps it), then measures it: the trial's row."""
    recipe = training_recipe(config)
    optimizer = recipe.optimizer(model)
    if resume:
        optimizer.load_state_dict(resume["optimizer"])
    cuda = device.type == "cuda"
    parallel = active_parallel()  # data-parallel ranks: each its share of the data and of the global batch
    fast = choose_fast_path(device, config.amp, config.channels_last, False if parallel else config.compile,
                            False if parallel else config.graph)
    if parallel:
        data, recipe = data.shard(parallel.rank, parallel.world), replace(recipe, batch_size=parallel.per_rank(recipe.batch_size))
    sample = next(iter(Batches(data, recipe.batch_size, True, torch.Generator().manual_seed(0))))
    memory_estimate = training_step_bytes(model, *sample)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    first = resume["epoch"] if resume else start_epoch
    log.info("%s %s: p=%d, training epochs %d..%d on %s (%s)", config.arch, config.kind, config.p, first,
             recipe.epochs, device, fast.path)
    earlier = list(resume["context"].get("energy_attempts", [])) if resume else []
    context = facts if facts is not None else {"start_epoch": 0}
    # `model` stays the plain module: checkpoints, saved weights and measurements see it; only the
    # training steps run through the compiled one (compiled again on resume: a fresh module), and a
    # data-parallel run's through DDP (wrapped by the run, after it has its memory format)
    runner, compile_seconds = model, 0.0
    fast.apply()
    if fast.compiled:
        runner, compile_seconds = compile_for_training(model, data, recipe.batch_size, fast.amp,
                                                       fast.channels_last, fast.compile_mode)
        log.info("compiled (torch.compile mode %s) in %.1fs", fast.compile_mode, compile_seconds)
    keep_energy = KeepEnergy(earlier)
    hooks = [keep_energy, log_progress, *callbacks]
    if config.out_dir and config.checkpoint_epochs:
        hooks.append(SaveWeights(config.checkpoint_epochs, Path(config.out_dir) / "checkpoints"))
    dense_macs, macs = count_macs(dense, data.image_size), count_macs(model, data.image_size)
    terms = RunTerms(label=config.hash(),  # the trial's, or its dense run's (dense_config)
                     fuse=(not parallel) and fused(device, config.fuse), fuse_tag=(config.arch, config.shortcut),
                     energy=EnergyTerms(config.country, config.gpu_share, config.emissions, macs), parallel=parallel)
    run = Run(model, data, recipe, config.seed, first, callbacks=hooks, amp=fast.amp,
              channels_last=fast.channels_last, optimizer=optimizer, history=resume["history"] if resume else (),
              context=context, runner=runner, graph=fast.graphed,
              name=f"{config.arch} {config.kind} p={config.p} seed={config.seed}", terms=terms)
    keep_energy.run = run
    yield run  # trained here, alone or beside other trials
    history = run.history
    context.pop("energy_attempts", None)  # the row carries the totals (over_attempts) instead
    seconds = [h["epoch_seconds"] for h in history]
    return {
        **config.to_dict(), "trial_id": config.hash(), "status": "finished",
        "dense_params": count_params(dense), "params": count_params(model),
        "dense_macs": dense_macs, "macs": macs, "macs_reduction": 1 - macs / dense_macs,
        "final_test_acc": history[-1]["test_acc"] if history else None,
        "best_test_acc": max((h["test_acc"] for h in history), default=None),
        "start_epoch": start_epoch, "resumed_from_epoch": resume["epoch"] if resume else None,
        "epochs_trained": len(history), "train_seconds": sum(seconds),
        "compile_seconds": compile_seconds,  # this attempt's warm-up, apart from train_seconds; 0 when eager
        "images_per_second": sum(h["images_per_second"] for h in history) / max(1, len(history)),
        **memory_columns(run, device, memory_estimate),
        **fast.record(), **engine_used(run), "device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        **over_attempts(earlier, run.report.energy), **streamed(data), "history": history,
    }


def streamed(data):
    """A dataset that streams: the crops' size and the corrupt images skipped (never fatal)."""
    if not hasattr(data, "stream_batches"):
        return {}
    return {"stream_image_size": data.size, "images_skipped": data.skipped, "data_source": data.source.kind,
            "data_decode": data.decode_on, "data_transform": data.transform_name}


def engine_used(run):
    """What trained, when it is not what the fast path chose: a graphed run whose capture failed,
    or one trained fused with others (`training.packs.fusion`: the largest group it was in); from
    the run's report (`training.boundary.RunReport`)."""
    used, report = {}, run.report
    if run.stepper.fallback is not None:
        used = {"graphed": False, "training_path": "eager", "graph_fallback": run.stepper.fallback}
    if report.fused_group_size > 1:
        used |= {"training_path": "fused_cuda_graph" if report.fused_graphed else "fused_eager",
                 "fused_group_size": report.fused_group_size, "ghost_blocks": report.ghost_blocks}
    if report.shared_with:  # identical training done once for these runs and this one
        used["training_shared_with"] = report.shared_with
    return used


def memory_columns(run, device, estimate):
    """Peak training memory: the process's CUDA peak for a run that trained alone; for one that
    shared its process (a pack), the peak of one of its own steps plus the tensors it keeps."""
    if device.type != "cuda":
        return {"memory_bytes": estimate, "memory_method": "estimate:weights+grads+momentum+saved_activations",
                "memory_estimate_bytes": estimate}
    if run.report.peak_members == 1:
        return {"memory_bytes": torch.cuda.max_memory_allocated(device), "memory_method": "cuda_peak_allocated",
                "memory_estimate_bytes": estimate}
    return {"memory_bytes": run.report.own_peak_bytes, "memory_method": "cuda_own_step_peak+own_tensors",
            "memory_estimate_bytes": estimate}


class KeepEnergy:
    """Training callback: the energy of this attempt so far (its run's share), beside that of
    earlier attempts, in the context a checkpoint saves, so a resumed trial's energy covers every
    attempt."""

    def __init__(self, earlier):
        self.earlier, self.run = earlier, None

    def __call__(self, state):
        energy = self.run.report.energy if self.run is not None else None
        if state.metrics is not None and energy and energy.get("energy_kwh") is not None:
            state.context["energy_attempts"] = [*self.earlier, energy]
