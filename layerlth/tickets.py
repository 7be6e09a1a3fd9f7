"""How each kind of ticket is made from the dense net, before training:

- at_init (Algorithm 2): score the blocks at initialisation, remove the p lowest.
- filter (Table 3): at initialisation, remove the lowest-scoring filters until the net has as many
  filters as the layer ticket of the same p.
- after_training (Algorithm 1): score the blocks of the trained dense net, remove the p lowest, and
  rewind the kept weights to the dense run's epoch `rewind` (or re-initialise them at random).

Each returns (ticket, facts for the result row, epoch at which its training starts).
"""

import copy

import torch

from layerlth.criteria import aggregate, check_criterion, score_blocks, score_weights
from layerlth.data import Batches
from layerlth.models import RemovalRule, build_model, removable_blocks, remove_blocks, select_lowest
from layerlth.models.filters import filter_count, filter_scores, remove_filters, select_filters


def removal_rule(config):
    return RemovalRule(keep_first=config.keep_first, min_per_stage=config.min_per_stage)


def scoring_batches(data, config):
    """The first `score_batches` shuffled, un-augmented training batches of the trial's seed."""
    if data is None:
        return []
    generator = torch.Generator().manual_seed(config.seed)
    batches = Batches(data, config.score_batch_size, True, generator, augment=False)
    return [batch for batch, _ in zip(batches, range(config.score_batches))]


def _options(config, data, input_size):
    return {"seed": config.seed, "input_size": data.image_size if data else input_size,
            "n_components": config.pls_components}


def _criterion_batches(data, config):
    return scoring_batches(data, config) if check_criterion(config.criterion).needs_data else ()


def score_and_remove(model, config, data=None, input_size=(3, 32, 32)):
    """Score `model`'s removable blocks with the config's criterion; remove the p lowest.
    `data` may be None for data-free criteria (SynFlow, L1, random)."""
    if config.p == 0:
        return model, {}, []
    rule = removal_rule(config)
    scores = score_blocks(model, config.criterion, _criterion_batches(data, config), removable_blocks(model, rule),
                          config.aggregate, **_options(config, data, input_size))
    removed = select_lowest(model, scores, config.p, rule)
    return remove_blocks(model, removed), scores, removed


def at_init(dense, config, data):
    ticket, scores, removed = score_and_remove(dense, config, data)
    return ticket, {"scores": scores, "removed": removed}, 0


def filter_ticket(dense, config, data):
    # one scoring pass serves both the layer ticket (its size is the target) and the filters
    weights = score_weights(dense, config.criterion, _criterion_batches(data, config), **_options(config, data, None))
    rule = removal_rule(config)
    removed = select_lowest(dense, aggregate(weights, removable_blocks(dense, rule), config.aggregate), config.p, rule)
    target = filter_count(remove_blocks(dense, removed))
    chosen = select_filters(dense, filter_scores(dense, weights), filter_count(dense) - target)
    ticket = remove_filters(dense, chosen)
    facts = {"removed": [], "layer_ticket_removed": removed, "filters": filter_count(ticket),
             "dense_filters": filter_count(dense), "removed_filters": {b: len(f) for b, f in chosen.items()}}
    return ticket, facts, 0


def after_training(dense, run, config, data):
    """`dense` is the net at initialisation; `run` the stored dense run it was trained into."""
    device = next(dense.parameters()).device
    trained = with_weights(dense, run.weights(run.epochs, device))
    _, scores, removed = score_and_remove(trained, config, data)
    if config.reinit:  # Liu et al. 2019: same architecture, fresh weights
        torch.manual_seed(config.seed + 1)
        start = build_model(config.arch, data.num_classes, data.image_size[0], config.shortcut).to(device)
        return remove_blocks(start, removed), {"scores": scores, "removed": removed}, 0
    rewound = with_weights(dense, run.weights(config.rewind, device))
    return remove_blocks(rewound, removed), {"scores": scores, "removed": removed}, config.rewind


def with_weights(model, state):
    model = copy.deepcopy(model)
    model.load_state_dict(state)
    return model
