"""Block surgery: a physically shallower copy of a network, with the kept weights of the original."""

import copy

from layerlth.models.blocks import PHYSICAL_ONLY, describe_blocks, preserves_shape


def remove_blocks(model, names):
    """Return a copy of `model` without the named blocks; `model` itself is untouched.

    The copy carries the original's parameters and BN buffers for every kept module, so a ticket
    keeps the dense net's own initial weights. Removed blocks are deleted from their container
    (no masks), so their compute and memory are really gone.
    """
    names = list(dict.fromkeys(names))
    known = {info.name for info in describe_blocks(model, PHYSICAL_ONLY)}
    for name in names:
        if name not in known:
            raise ValueError(f"{name!r} is not a residual block of this model; blocks: {sorted(known)}")
        if not preserves_shape(model.get_submodule(name)):
            raise ValueError(f"cannot remove {name!r}: it changes resolution or width")
    pruned = copy.deepcopy(model)
    for name in names:
        parent, _, child = name.rpartition(".")
        delattr(pruned.get_submodule(parent), child)
    return pruned


def replace_module(model, name, module):
    """Put `module` in `model` at the dotted `name`, in place (a layer swapped for another)."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)

