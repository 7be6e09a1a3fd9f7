"""A ticket's architecture as plain data, and the network rebuilt from it.

Checkpoints hold this description next to a state_dict instead of a pickled module, so loading one
needs only `torch.load(..., weights_only=True)`: tensors and plain containers, never code.
"""

import torch.nn as nn

from layerlth.models import build_model
from layerlth.models.blocks import PHYSICAL_ONLY, describe_blocks
from layerlth.models.filters import prunable_convs, remove_filters


def _filters(model):
    try:
        return prunable_convs(model)
    except ValueError:  # no conv1/bn1/conv2 blocks (MobileNetV2): no filter tickets either
        return {}


def describe(model, arch, shortcut="B", shape=(3, 32, 32)):
    """{arch, shortcut, num_classes, in_channels, image_size, removed blocks, filters of each narrowed
    conv1}; `shape` is the (C, H, W) of the images the net was built for."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    description = {"arch": arch, "shortcut": shortcut, "in_channels": convs[0].in_channels if convs else int(shape[0]),
                   "num_classes": linears[-1].out_features, "image_size": int(shape[-1])}
    full = build_model(arch, description["num_classes"], description["in_channels"], shortcut,
                       image_size=description["image_size"])
    kept = {info.name for info in describe_blocks(model, PHYSICAL_ONLY)}
    description["removed"] = [info.name for info in describe_blocks(full, PHYSICAL_ONLY) if info.name not in kept]
    widths = _filters(full)
    description["filters"] = {name: n for name, n in _filters(model).items() if n != widths.get(name)}
    return description


def rebuild(description, arch, shortcut, image_size=32):
    """A network of the described shape (its weights are to be loaded from a state_dict). The
    architecture and image size are the caller's, from the trial's own config: a description read
    from storage only says which of its blocks and filters are gone; one naming another architecture
    (a `module:callable` included) is refused before anything is built or imported."""
    if (description.get("arch"), description.get("shortcut")) != (arch, shortcut):
        raise ValueError(f"the description is of arch {description.get('arch')!r} (shortcut "
                         f"{description.get('shortcut')!r}), not of the trial's {arch!r} ({shortcut!r})")
    if description.get("image_size", image_size) != image_size:  # older files name none (their nets take any)
        raise ValueError(f"the description is for {description.get('image_size')}-pixel images, the trial's are "
                         f"{image_size}")
    model = build_model(arch, int(description["num_classes"]), int(description["in_channels"]), shortcut,
                        removed=[str(name) for name in description["removed"]], image_size=image_size)
    widths = _filters(model)
    narrowed = {name: list(range(int(n), widths[name])) for name, n in description["filters"].items()}
    return remove_filters(model, narrowed) if narrowed else model
