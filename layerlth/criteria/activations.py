"""Block outputs on real batches, collected with forward hooks, for the criteria of trained nets."""

import torch


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
    try:
        for inputs, _ in batches:
            model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return collected
