"""What an architecture name means, as plain strings (no torch): the CIFAR ResNets, torchvision's
residual families, the CIFAR-size ViT, and a user's `module:callable`.

A name means one thing. `resnet50` and `resnet152` are torchvision's (they once matched the CIFAR
6n+2 pattern); the CIFAR family keeps resnet20/32/44/56/110 and takes any 6n+2 depth as
`cifar_resnet{N}`. `identity` is what a trial's hash sees, so a result stored under a name's old
meaning is never reused for its new one, and `cifar_resnet{N}` finds what `resnet{N}` stored.
"""

import re

CIFAR_NAMED = (20, 32, 44, 56, 110)
_CIFAR = re.compile(r"cifar_resnet(\d+)$")
_CIFAR_SHORT = re.compile(r"resnet(\d+)$")
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "resnext50_32x4d")
TORCHVISION = RESNETS + ("convnext_tiny", "swin_t", "efficientnet_b0", "mobilenet_v2", "mobilenet_v3_small",
                         "mobilenet_v3_large", "regnet_y_400mf", "vit_b_16")
CIFAR_STEM = "_cifar"  # resnet50_cifar: torchvision's ResNet-50 with the CIFAR stem (3x3 conv, no max-pool)
VIT_CIFAR = "vit_cifar"
USER = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
RENAMED = ("resnet50", "resnet152")  # meant CIFAR 6n+2 ResNets before torchvision's families came in
ARCH_HELP = (
    "CIFAR ResNets: resnet20, resnet32, resnet44, resnet56, resnet110, or cifar_resnet{6n+2} at any depth; "
    f"torchvision: {', '.join(TORCHVISION)} (ResNets also with the CIFAR stem: {RESNETS[0]}{CIFAR_STEM}, ...); "
    f"{VIT_CIFAR} (a ViT for 32x32 images, patch 4); or your own 'package.module:callable'"
)


def _is_6n_plus_2(depth):
    return depth >= 8 and (depth - 2) % 6 == 0


def cifar_depth(arch):
    """N of a CIFAR ResNet name (resnet20 ... or cifar_resnet{N}), else None."""
    match = _CIFAR.match(arch)
    if match:
        return int(match[1])
    match = _CIFAR_SHORT.match(arch)
    return int(match[1]) if match and int(match[1]) in CIFAR_NAMED else None


def check_arch(arch):
    """`arch` if it names an architecture (a user's callable is only parsed here, not imported)."""
    if not isinstance(arch, str):
        raise ValueError(f"arch must be a string, got {arch!r}")
    depth = cifar_depth(arch)
    if depth is not None:
        if not _is_6n_plus_2(depth):
            raise ValueError(f"arch {arch!r}: a CIFAR ResNet has 6n+2 layers (20, 26, 32, ...), not {depth}")
        return arch
    if arch in TORCHVISION or arch == VIT_CIFAR or USER.match(arch):
        return arch
    if arch.endswith(CIFAR_STEM) and arch[: -len(CIFAR_STEM)] in RESNETS:
        return arch
    hint = ""
    match = _CIFAR_SHORT.match(arch)
    if match and _is_6n_plus_2(int(match[1])):
        hint = f" (the CIFAR ResNet of that depth is 'cifar_{arch}')"
    raise ValueError(f"unknown arch {arch!r}{hint}; allowed: {ARCH_HELP}")


def is_user(arch):
    return bool(USER.match(arch))


def identity(arch):
    """The architecture as a trial's hash names it."""
    depth = cifar_depth(arch)
    if depth is not None:
        return f"resnet{depth}"  # the CIFAR ResNets' names before cifar_resnet{N} existed
    if arch in RENAMED:
        return f"torchvision.{arch}"
    return arch
