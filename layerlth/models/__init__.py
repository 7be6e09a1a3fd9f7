"""Model registry: architecture name -> network whose residual blocks have stable names."""

import re

import torch.nn as nn

from layerlth._torchvision import torchvision
from layerlth.models.blocks import (
    BlockInfo,
    RemovalRule,
    describe_blocks,
    max_removable,
    removable_blocks,
    select_lowest,
)
from layerlth.models.cifar_resnet import SHORTCUTS, cifar_resnet
from layerlth.models.surgery import remove_blocks

_CIFAR_RESNET = re.compile(r"resnet(\d+)$")
_TORCHVISION = ("resnet18", "mobilenet_v2")
ARCH_HELP = "resnet{6n+2} (resnet20, resnet32, resnet44, resnet56, resnet110, ...), " + ", ".join(_TORCHVISION)


def _torchvision_model(arch, num_classes, in_channels):
    """ImageNet-style nets from torchvision, unchanged but for the input channels."""
    model = getattr(torchvision.models, arch)(num_classes=num_classes)
    if in_channels != 3 and arch == "resnet18":
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    elif in_channels != 3:
        model.features[0][0] = nn.Conv2d(in_channels, 32, 3, 2, 1, bias=False)
    return model


def check_arch(arch):
    match = _CIFAR_RESNET.match(arch)
    if arch in _TORCHVISION or (match and int(match[1]) >= 8 and (int(match[1]) - 2) % 6 == 0):
        return arch
    raise ValueError(f"unknown arch {arch!r}; allowed: {ARCH_HELP}")


def build_model(arch, num_classes=10, in_channels=3, shortcut="B", removed=()):
    """A freshly initialised `arch`; `removed` names blocks to leave out (a ticket's architecture).

    `shortcut` applies to the CIFAR ResNets: "B" (1x1 projection, the default: the paper's MAC
    counts include it) or "A" (parameter-free, the one He et al.'s parameter counts use).
    """
    check_arch(arch)
    if arch in _TORCHVISION:
        model = _torchvision_model(arch, num_classes, in_channels)
    else:
        model = cifar_resnet(int(_CIFAR_RESNET.match(arch)[1]), num_classes, in_channels, shortcut)
    return remove_blocks(model, removed) if removed else model


__all__ = [
    "ARCH_HELP",
    "BlockInfo",
    "RemovalRule",
    "SHORTCUTS",
    "build_model",
    "check_arch",
    "describe_blocks",
    "max_removable",
    "removable_blocks",
    "remove_blocks",
    "select_lowest",
]
