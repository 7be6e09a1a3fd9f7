"""What blocks compute on real batches, collected with forward hooks, for the criteria of trained
nets: a block's output, or the residual sum f(x) + x its last activation acts on."""

import torch
import torch.nn as nn


def _run(model, batches, hooks):
    try:
        for inputs, _ in batches:
            model(inputs)
    finally:
        for hook in hooks:
            hook.remove()


@torch.no_grad()
def block_outputs(model, batches, blocks, reduce):
    """{block: [reduce(output of the block) for each batch]}; `reduce` keeps memory small."""
    collected = {name: [] for name in blocks}
    hooks = [
        model.get_submodule(name).register_forward_hook(
            lambda module, args, output, name=name: collected[name].append(reduce(output))
        )
        for name in blocks
    ]
    _run(model, batches, hooks)
    return collected


def last_norm(block):
    """The BatchNorm that ends the block's residual branch f (bn2 of a basic block, the projection's
    BN of an inverted residual), or None for a block without one (ConvNeXt's CNBlock)."""
    norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1] if norms else None


@torch.no_grad()
def residual_sums(model, batches, blocks, reduce):
    """{block: [reduce(f(x) + x) for each batch]}: the sum before the block's last activation (the
    output of the `Add` layer in Keras terms). Only for shape-preserving blocks, whose shortcut is x.
    A block whose branch ends in no BatchNorm (ConvNeXt) applies nothing after the sum: its output is it."""
    collected = {name: [] for name in blocks}
    inputs = {}
    hooks = []
    for name in blocks:
        block = model.get_submodule(name)
        norm = last_norm(block)
        if norm is None:
            hooks.append(block.register_forward_hook(
                lambda module, args, output, name=name: collected[name].append(reduce(output))))
            continue
        hooks.append(block.register_forward_pre_hook(lambda module, args, name=name: inputs.__setitem__(name, args[0])))
        hooks.append(norm.register_forward_hook(
            lambda module, args, output, name=name: collected[name].append(reduce(output + inputs[name]))
        ))
    _run(model, batches, hooks)
    return collected
