"""What a trial config may be: every check that needs no data or training, run before any trial
starts (by the trial itself, a grid, a depth search's specs and the CLI)."""

import torch

from layerlth.criteria import AGGREGATES, CRITERIA, check_applicable, check_criterion
from layerlth.data import check_dataset, image_shape
from layerlth.foundations.recipes import training_recipe
from layerlth.measure.robustness import check_robustness
from layerlth.models import SHORTCUTS, check_arch, checked_network, max_removable
from layerlth.models.filters import prunable_convs
from layerlth.tickets import procedures as tickets
from layerlth.tickets.dense_runs import DenseRun
from layerlth.tickets.rounds import check_rounds
from layerlth.training.fastpath import check_compile, check_graph

KINDS = ("dense", "at_init", "after_training", "filter")


def validate(config):
    """Every check that needs no data or training; raises ValueError naming the bad value."""
    if config.kind not in KINDS:
        raise ValueError(f"unknown kind {config.kind!r}; allowed: {list(KINDS)}")
    check_arch(config.arch)
    check_criterion(config.criterion)
    check_dataset(config.dataset)
    check_robustness(config)
    check_compile(config.compile)
    check_graph(config.graph, config.compile)
    if config.graph is True and config.device in ("cpu", "mps"):
        raise ValueError(f"graph=true needs a CUDA device, but device={config.device!r}; use graph auto or false")
    recipe = training_recipe(config)
    if recipe.epochs < 1 or recipe.batch_size < 1 or recipe.lr <= 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {recipe}")
    if config.shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {config.shortcut!r}; allowed: {sorted(SHORTCUTS)}")
    if config.aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {config.aggregate!r}; allowed: {sorted(AGGREGATES)}")
    for name in ("score_batches", "score_batch_size", "min_per_stage", "pls_components"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    model = checked_network(config.arch, image_shape(config.dataset), config.shortcut)
    check_applicable(config.criterion, model, config.arch)
    rule = tickets.removal_rule(config)
    limit = max_removable(model, rule)
    if not 0 <= config.p <= limit:
        raise ValueError(f"p={config.p} is not possible for {config.arch}: allowed 0..{limit} under {rule}")
    check_rounds(config.rounds, config.p)
    if config.kind == "dense" and config.p:
        raise ValueError(f"kind 'dense' removes nothing, but p={config.p}")
    if config.kind == "filter":
        prunable_convs(model)
        if not CRITERIA[config.criterion].per_weight:
            allowed = sorted(n for n, c in CRITERIA.items() if c.per_weight)
            raise ValueError(f"filter tickets need a per-weight criterion, not {config.criterion!r}; allowed: {allowed}")
    run = DenseRun(config, recipe.epochs)
    for name, epochs in (("checkpoint_epochs", config.checkpoint_epochs), ("rewind_epochs", run.rewind_epochs)):
        bad = [e for e in epochs if not 0 <= e <= recipe.epochs]
        if bad:
            raise ValueError(f"{name} {bad} outside 0..{recipe.epochs}")
    if config.kind == "after_training" and not config.reinit and config.rewind not in run.rewind_epochs:
        raise ValueError(f"rewind={config.rewind} is not among the dense run's rewind_epochs {run.rewind_epochs}")
    return config


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
