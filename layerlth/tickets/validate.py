"""What a trial config may be: every check that needs no data or training, run before any trial
starts (by the trial itself, a grid, a depth search's specs and the CLI)."""

import torch

from layerlth.criteria import AGGREGATES, CRITERIA, check_applicable, check_criterion
from layerlth.data import DatasetUnavailable, check_dataset, image_shape
from layerlth.data.sources import NAMES as DATASETS
from layerlth.foundations.arch_names import CIFAR_NAMED, CIFAR_STEM, RESNETS, TORCHVISION, VIT_CIFAR
from layerlth.foundations.dataset_identity import is_stream
from layerlth.foundations.field_checks import hinted, raise_all
from layerlth.foundations.recipes import RECIPES, get_recipe, training_recipe
from layerlth.measure.robustness import KINDS as ROBUSTNESS
from layerlth.measure.robustness import check_robustness
from layerlth.measure.robustness.evaluate import SOURCES
from layerlth.models import SHORTCUTS, check_arch, checked_network, max_removable
from layerlth.models.filters import prunable_convs
from layerlth.tickets import procedures as tickets
from layerlth.tickets.dense_runs import DenseRun
from layerlth.tickets.rounds import check_rounds
from layerlth.training.fastpath import check_compile, check_graph

KINDS = ("dense", "at_init", "after_training", "filter")
# the architectures with a plain name (cifar_resnet{N} and user callables are patterns, not names)
ARCH_NAMES = (*(f"resnet{depth}" for depth in CIFAR_NAMED), *TORCHVISION, VIT_CIFAR,
              *(r + CIFAR_STEM for r in RESNETS))


def one_of(what, names):
    """The check that a value is one of `names` (listed as given), worded as the other checks."""
    def check(value):
        if value not in names:
            raise ValueError(f"unknown {what} {value!r}; allowed: {names}")
    return check


def check_robustness_kinds(kinds):
    unknown = [k for k in kinds if k not in ROBUSTNESS]
    if unknown:
        raise ValueError(f"unknown robustness {unknown}; allowed: {list(ROBUSTNESS)}")


# field: (its check, the names it allows), each checked on its own so that all bad names are named at once
NAMED = {"kind": (one_of("kind", list(KINDS)), KINDS), "arch": (check_arch, ARCH_NAMES),
         "criterion": (check_criterion, CRITERIA), "dataset": (check_dataset, DATASETS),
         "recipe": (get_recipe, RECIPES),
         "shortcut": (one_of("shortcut", sorted(SHORTCUTS)), SHORTCUTS),
         "aggregate": (one_of("aggregate", sorted(AGGREGATES)), AGGREGATES),
         "robustness": (check_robustness_kinds, ROBUSTNESS),
         "corruption_source": (one_of("corruption_source", list(SOURCES)), SOURCES)}


def name_problems(values):
    """[(field, error)] for each name among `values` (a config's dict) that names nothing, an unknown one
    with the nearest allowed name."""
    problems = []
    for field, (check, names) in NAMED.items():
        if field not in values:
            continue
        value = values[field]
        try:
            check(value)
        except (ValueError, DatasetUnavailable) as error:
            # an unknown name, not one of a known form with a bad part (cifar_resnet21 has its own message)
            if str(error).startswith("unknown"):
                words = [v for v in value if v not in names] if isinstance(value, (list, tuple)) else value
                error = ValueError(hinted(str(error), words, names))
            problems.append((field, error))
    return problems


def validate(config):
    """Every check that needs no data or training; raises ValueError naming the bad value (every bad
    name at once: `BadValues`)."""
    raise_all(name_problems(config.to_dict()))
    check_robustness(config)
    check_compile(config.compile)
    check_graph(config.graph, config.compile)
    if config.graph is True and config.device in ("cpu", "mps"):
        raise ValueError(f"graph=true needs a CUDA device, but device={config.device!r}; use graph auto or false")
    recipe = training_recipe(config)
    if recipe.epochs < 1 or recipe.batch_size < 1 or recipe.lr <= 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {recipe}")
    if recipe.batch_size % config.workers:
        raise ValueError(f"batch_size {recipe.batch_size} does not split over workers={config.workers}: use a "
                         f"multiple of {config.workers}")
    for name in ("score_batches", "score_batch_size", "min_per_stage", "pls_components"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    check_streaming(config)
    model = checked_network(config.arch, image_shape(config.dataset, config.image_size), config.shortcut)
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


def check_streaming(config):
    """What a dataset that streams (a directory or s3:// prefix) takes, and what only it takes."""
    if config.data_decode == "cuda" and pick_device(config.device).type != "cuda":
        raise ValueError(f"data_decode='cuda' decodes JPEGs with nvJPEG on a GPU, but the trial runs on "
                         f"device={config.device!r} ({pick_device(config.device)}); use data_decode cpu")
    if not is_stream(config.dataset):
        if config.data_decode != "cpu":
            raise ValueError(f"data_decode={config.data_decode!r} applies to a dataset that streams (a directory), "
                             f"not to {config.dataset!r}, which is held in memory")
        for name in ("image_size", "data_workers"):
            if getattr(config, name) is not None:
                raise ValueError(f"{name}={getattr(config, name)} applies to a dataset that streams (a directory), "
                                 f"not to {config.dataset!r}, which is held in memory at its own size")
        if get_recipe(config.recipe).train_sizes is not None:
            raise ValueError(f"recipe {config.recipe!r} resizes its training crops by epoch, which only a dataset "
                             f"that streams (a directory) can; {config.dataset!r} is held in memory at its own size")
        if config.workers > 1:
            raise ValueError(f"workers={config.workers} trains one trial on several processes, for a dataset that "
                             f"streams (a directory); {config.dataset!r} is held in memory: pack such trials "
                             f"instead (--trials-per-gpu)")
    elif config.robustness:
        raise ValueError(f"robustness {list(config.robustness)} is not measured on a dataset that streams "
                         f"({config.dataset!r}); leave robustness empty")


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
