"""One trial as a plain function: config -> dense net at a seed -> block scores -> surgery ->
training -> measurements -> result row. With p = 0 it is the dense baseline."""

import logging
import platform
import time
from pathlib import Path

import torch

from layerlth.checkpoints import write_json_atomic
from layerlth.config import TrialConfig
from layerlth.criteria import AGGREGATES, check_criterion, score_blocks
from layerlth.data import Batches, check_dataset, load_dataset
from layerlth.emissions import EmissionsMeter
from layerlth.measure import count_macs, count_params, training_step_bytes
from layerlth.models import RemovalRule, SHORTCUTS, build_model, check_arch, max_removable, select_lowest
from layerlth.models import removable_blocks, remove_blocks
from layerlth.recipes import get_recipe
from layerlth.train import SaveWeights, log_progress, train

log = logging.getLogger("layerlth")


def validate(config):
    """Every check that needs no data or training; raises ValueError naming the bad value."""
    check_arch(config.arch)
    check_criterion(config.criterion)
    check_dataset(config.dataset)
    get_recipe(config.recipe)
    if config.shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {config.shortcut!r}; allowed: {sorted(SHORTCUTS)}")
    if config.aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {config.aggregate!r}; allowed: {sorted(AGGREGATES)}")
    for name in ("score_batches", "score_batch_size", "min_per_stage"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    rule = removal_rule(config)
    limit = max_removable(build_model(config.arch, shortcut=config.shortcut), rule)
    if not 0 <= config.p <= limit:
        raise ValueError(f"p={config.p} is not possible for {config.arch}: allowed 0..{limit} under {rule}")
    recipe = training_recipe(config)
    bad = [e for e in config.checkpoint_epochs if not 0 <= e <= recipe.epochs]
    if bad:
        raise ValueError(f"checkpoint_epochs {bad} outside 0..{recipe.epochs}")
    return config


def removal_rule(config):
    return RemovalRule(keep_first=config.keep_first, min_per_stage=config.min_per_stage)


def training_recipe(config):
    return get_recipe(config.recipe).scaled(config.epochs, config.batch_size, config.lr)


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def scoring_batches(data, config):
    """The first `score_batches` shuffled, un-augmented training batches of the trial's seed."""
    generator = torch.Generator().manual_seed(config.seed)
    batches = Batches(data, config.score_batch_size, True, generator, augment=False)
    return [batch for batch, _ in zip(batches, range(config.score_batches))]


def score_and_remove(model, config, data=None, input_size=(3, 32, 32)):
    """The ticket at initialisation: score the dense net's blocks, remove the p lowest.

    `data` may be None for data-free criteria (SynFlow, random)."""
    if config.p == 0:
        return model, {}, []
    needs_data = check_criterion(config.criterion).needs_data
    batches = scoring_batches(data, config) if needs_data else ()
    rule = removal_rule(config)
    scores = score_blocks(
        model, config.criterion, batches, removable_blocks(model, rule), config.aggregate,
        seed=config.seed, input_size=data.image_size if data else input_size,
    )
    removed = select_lowest(model, scores, config.p, rule)
    return remove_blocks(model, removed), scores, removed


def run_trial(config, callbacks=()):
    """Run one trial; return a flat, JSON-friendly dict. `callbacks` see every epoch."""
    config = validate(TrialConfig.from_dict(config) if isinstance(config, dict) else config)
    recipe = training_recipe(config)
    device = pick_device(config.device)
    cuda = device.type == "cuda"
    data = load_dataset(config.dataset, config.data_dir)
    data = data.subset(train=config.train_subset).to(device)

    torch.manual_seed(config.seed)
    dense = build_model(config.arch, data.num_classes, data.image_size[0], config.shortcut).to(device)
    started = time.perf_counter()
    model, scores, removed = score_and_remove(dense, config, data)
    score_seconds = time.perf_counter() - started

    sample = next(iter(Batches(data, recipe.batch_size, True, torch.Generator().manual_seed(0))))
    memory_estimate = training_step_bytes(model, *sample)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    hooks = [log_progress, *callbacks]
    if config.out_dir and config.checkpoint_epochs:
        hooks.append(SaveWeights(config.checkpoint_epochs, Path(config.out_dir) / "checkpoints"))
    log.info("%s: %s blocks removed %s, training %d epochs on %s", config.arch, config.p, removed, recipe.epochs, device)
    with EmissionsMeter(config.country, config.emissions) as meter:
        history = train(model, data, recipe, config.seed, callbacks=hooks,
                        amp=config.amp and cuda, channels_last=config.channels_last and cuda)

    dense_macs, macs = count_macs(dense, data.image_size), count_macs(model, data.image_size)
    seconds = [h["epoch_seconds"] for h in history]
    result = {
        **config.to_dict(), "trial_id": config.hash(), "status": "finished",
        "removed": removed, "scores": scores, "score_seconds": score_seconds,
        "dense_params": count_params(dense), "params": count_params(model),
        "dense_macs": dense_macs, "macs": macs, "macs_reduction": 1 - macs / dense_macs,
        "final_test_acc": history[-1]["test_acc"] if history else None,
        "best_test_acc": max((h["test_acc"] for h in history), default=None),
        "epochs_trained": len(history), "train_seconds": sum(seconds),
        "images_per_second": sum(h["images_per_second"] for h in history) / max(1, len(history)),
        "memory_bytes": torch.cuda.max_memory_allocated(device) if cuda else memory_estimate,
        "memory_method": "cuda_peak_allocated" if cuda else "estimate:weights+grads+momentum+saved_activations",
        "memory_estimate_bytes": memory_estimate,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        **meter.result, "history": history,
    }
    if config.out_dir:
        write_json_atomic(result, Path(config.out_dir) / "result.json")
    return result
