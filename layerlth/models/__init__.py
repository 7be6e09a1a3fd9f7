"""Model registry: architecture name -> network whose residual blocks have stable names."""

from functools import lru_cache

import torch

from layerlth.foundations.arch_names import ARCH_HELP, check_arch
from layerlth.models.blocks import (
    PHYSICAL_ONLY,
    BlockInfo,
    RemovalRule,
    block_kind,
    describe_blocks,
    max_removable,
    register_block,
    removable_blocks,
    select_lowest,
)
from layerlth.models.cifar_resnet import SHORTCUTS
from layerlth.models.surgery import remove_blocks
from layerlth.models.zoo import build_network


def build_model(arch, num_classes=10, in_channels=3, shortcut="B", removed=(), image_size=32):
    """A freshly initialised `arch` for `image_size`-sided images; `removed` names blocks to leave
    out (a ticket's architecture).

    `shortcut` applies to the CIFAR ResNets: "B" (1x1 projection, the default: the paper's MAC
    counts include it) or "A" (parameter-free, the one He et al.'s parameter counts use).
    """
    model = build_network(arch, num_classes, in_channels, shortcut, image_size)
    return remove_blocks(model, removed) if removed else model


def build_for_images(arch, num_classes, shape, shortcut="B", removed=()):
    """`arch` for images of shape (C, H, W)."""
    return build_model(arch, num_classes, shape[0], shortcut, removed, image_size=shape[-1])


@lru_cache(maxsize=32)
def checked_network(arch, shape=(3, 32, 32), shortcut="B"):
    """`arch` built for images of `shape` (C, H, W), shown to take one such image and to have at
    least one removable block: the driver's check before any trial starts, each error naming the
    arch. Cached (a grid asks for the same net many times), so callers only read it."""
    model = build_for_images(arch, 10, tuple(shape), shortcut).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    except Exception as error:
        raise ValueError(f"arch {arch!r} does not take {'x'.join(map(str, shape))} images "
                         f"({type(error).__name__}: {error})") from error
    try:
        blocks = describe_blocks(model, PHYSICAL_ONLY)
    except ValueError as error:
        raise ValueError(f"arch {arch!r}: {error}") from error
    if not any(block.removable for block in blocks):
        why = "; ".join(f"{b.name}: {b.reason}" for b in blocks)
        raise ValueError(f"arch {arch!r} has no removable residual block ({why})")
    return model


__all__ = [
    "ARCH_HELP",
    "BlockInfo",
    "block_kind",
    "register_block",
    "RemovalRule",
    "SHORTCUTS",
    "build_for_images",
    "build_model",
    "check_arch",
    "checked_network",
    "describe_blocks",
    "max_removable",
    "removable_blocks",
    "remove_blocks",
    "select_lowest",
]
