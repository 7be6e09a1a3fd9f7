"""How each kind of ticket is made from the dense net, before training:

- at_init (Algorithm 2): score the blocks at initialisation, remove the p lowest (in one shot, or
  in `rounds` rounds that each re-score the shallower net: `layerlth.tickets.rounds`).
- filter (Table 3): at initialisation, remove the lowest-scoring filters until the net has as many
  filters as the layer ticket of the same p (chosen in as many rounds as the config says).
- after_training (Algorithm 1): score the blocks of the trained dense net, remove the p lowest, and
  rewind the kept weights to the dense run's epoch `rewind` (or re-initialise them at random).

Each returns (ticket, facts for the result row, epoch at which its training starts).
"""

import copy

import torch

from layerlth.criteria import aggregate, check_criterion, score_blocks, score_weights
from layerlth.data import Batches
from layerlth.models import RemovalRule, build_for_images, removable_blocks, remove_blocks
from layerlth.models.filters import filter_count, filter_scores, remove_filters, select_filters
from layerlth.tickets.rounds import removal_order, remove_in_rounds


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


def block_scorer(config, data=None, input_size=(3, 32, 32)):
    """net -> {block: score} for the blocks of `net` the removal rule lets go, with the config's
    criterion, on the same batches every time it is called (so rounds differ only in the net)."""
    rule, batches, options = removal_rule(config), _criterion_batches(data, config), _options(config, data, input_size)

    def score(net):
        return score_blocks(net, config.criterion, batches, removable_blocks(net, rule), config.aggregate, **options)

    return score


def score_and_remove(model, config, data=None, input_size=(3, 32, 32), score=None):
    """Score `model`'s removable blocks with the config's criterion and remove the p lowest, in
    `config.rounds` rounds (1: one shot). Returns (ticket, facts): `scores` of the first round (the
    model's own), `removed` in removal order, `removal_rounds` each round's scores and removals.
    `data` may be None for data-free criteria (SynFlow, L1, random)."""
    if config.p == 0:
        return model, {"scores": {}, "removed": [], "removal_rounds": []}
    score = score or block_scorer(config, data, input_size)
    ticket, history = remove_in_rounds(model, score, config.p, config.rounds, removal_rule(config))
    return ticket, {"scores": history[0]["scores"], "removed": removal_order(history), "removal_rounds": history}


def at_init(dense, config, data):
    ticket, facts = score_and_remove(dense, config, data)
    return ticket, facts, 0


def filter_ticket(dense, config, data, input_size=(3, 32, 32)):
    """The filters are scored once, on the dense net; the target is the filter count of the layer
    ticket of the same p chosen the same way (in `rounds` rounds when asked)."""
    options = _options(config, data, input_size)
    weights = score_weights(dense, config.criterion, _criterion_batches(data, config), **options)
    rule, later_rounds = removal_rule(config), block_scorer(config, data, input_size)

    def score(net):  # the dense net's block scores come from the pass that scored the filters
        return aggregate(weights, removable_blocks(net, rule), config.aggregate) if net is dense else later_rounds(net)

    layer_ticket, layer = score_and_remove(dense, config, data, input_size, score)
    chosen = select_filters(dense, filter_scores(dense, weights), filter_count(dense) - filter_count(layer_ticket))
    ticket = remove_filters(dense, chosen)
    facts = {"removed": [], "layer_ticket_removed": layer["removed"], "filters": filter_count(ticket),
             "dense_filters": filter_count(dense), "removed_filters": {b: len(f) for b, f in chosen.items()}}
    return ticket, facts, 0


def after_training(dense, run, config, data):
    """`dense` is the net at initialisation; `run` the stored dense run it was trained into. With
    rounds > 1, each round re-scores the trained net without the blocks already removed (no
    training between rounds); the chosen blocks then leave the rewound (or re-initialised) net."""
    device = next(dense.parameters()).device
    trained = with_weights(dense, run.weights(run.epochs, device))
    _, facts = score_and_remove(trained, config, data)
    if config.reinit:  # Liu et al. 2019: same architecture, fresh weights
        torch.manual_seed(config.seed + 1)
        start = build_for_images(config.arch, data.num_classes, data.image_size, config.shortcut).to(device)
        return remove_blocks(start, facts["removed"]), facts, 0
    rewound = with_weights(dense, run.weights(config.rewind, device))
    return remove_blocks(rewound, facts["removed"]), facts, config.rewind


def with_weights(model, state):
    model = copy.deepcopy(model)
    model.load_state_dict(state)
    return model
