"""Networks by name: the CIFAR ResNets, torchvision's residual families, a CIFAR-size ViT, and a
user's own `module:callable`. Every builder takes the image size, so that a network is built,
validated and rebuilt for the images it will see.

torchvision's families are built unchanged (ImageNet stem) but for the input channels and, for a
ViT, the image size. The ResNets also come with the usual CIFAR stem as `<name>_cifar`: a 3x3
stride-1 first convolution and no max-pool (as the widely used CIFAR ResNet-18), keeping 32x32
maps in the first stage instead of 8x8.
"""

import importlib
import inspect

import torch.nn as nn

from layerlth.foundations._torchvision import torchvision
from layerlth.foundations.arch_names import CIFAR_STEM, VIT_CIFAR, check_arch, cifar_depth, is_user
from layerlth.models.cifar_resnet import cifar_resnet
from layerlth.models.surgery import replace_module

# vit_cifar: 6 encoder blocks of width 256 (4 heads, MLP 512) on 4x4 patches: 3.2M parameters
VIT_CIFAR_SHAPE = {"patch_size": 4, "num_layers": 6, "num_heads": 4, "hidden_dim": 256, "mlp_dim": 512}
PATCH = {"vit_b_16": 16, VIT_CIFAR: VIT_CIFAR_SHAPE["patch_size"]}


def _first_conv(model):
    return next((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d))


def _set_in_channels(model, in_channels):
    """The first convolution rebuilt for `in_channels` (same kernel, stride and padding)."""
    name, conv = _first_conv(model)
    if conv.in_channels != in_channels:
        replace_module(model, name, nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                        conv.padding, bias=conv.bias is not None))
    return model


def _cifar_stem(model):
    model.conv1 = nn.Conv2d(model.conv1.in_channels, model.conv1.out_channels, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def check_image_size(arch, image_size):
    patch = PATCH.get(arch)
    if patch and image_size % patch:
        raise ValueError(f"arch {arch!r} cuts {patch}x{patch} patches: the image side must be a multiple of "
                         f"{patch}, got {image_size}")


def _torchvision(arch, num_classes, in_channels, image_size):
    name = arch[: -len(CIFAR_STEM)] if arch.endswith(CIFAR_STEM) else arch
    kwargs = {"image_size": image_size} if name == "vit_b_16" else {}
    model = getattr(torchvision.models, name)(num_classes=num_classes, **kwargs)
    if name != arch:
        model = _cifar_stem(model)
    return _set_in_channels(model, in_channels)


def vit_cifar(num_classes=10, in_channels=3, image_size=32):
    model = torchvision.models.VisionTransformer(image_size=image_size, num_classes=num_classes, **VIT_CIFAR_SHAPE)
    return _set_in_channels(model, in_channels)


def user_callable(arch):
    """The callable `package.module:name` names, imported; a clear error naming the entry else."""
    module_name, _, attribute = arch.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ValueError(f"arch {arch!r}: cannot import {module_name!r} ({type(error).__name__}: {error}); "
                         f"it must be importable on the driver and on every node") from error
    build = getattr(module, attribute, None)
    if not callable(build):
        raise ValueError(f"arch {arch!r}: {module_name} has no callable {attribute!r}")
    return build


def _user(arch, num_classes, in_channels, image_size):
    build = user_callable(arch)
    params = inspect.signature(build).parameters
    takes_channels = "in_channels" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
    if in_channels != 3 and not takes_channels:
        raise ValueError(f"arch {arch!r}: the data has {in_channels} channels but {arch} takes no in_channels")
    extra = {"in_channels": in_channels} if takes_channels else {}
    try:
        model = build(num_classes=num_classes, image_size=image_size, **extra)
    except Exception as error:
        raise ValueError(f"arch {arch!r}: calling it with num_classes={num_classes}, image_size={image_size} "
                         f"failed ({type(error).__name__}: {error})") from error
    if not isinstance(model, nn.Module):
        raise ValueError(f"arch {arch!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def build_network(arch, num_classes=10, in_channels=3, shortcut="B", image_size=32):
    """A freshly initialised network called `arch`, for `image_size` x `image_size` images."""
    check_arch(arch)
    check_image_size(arch, image_size)
    depth = cifar_depth(arch)
    if depth is not None:
        return cifar_resnet(depth, num_classes, in_channels, shortcut)
    if arch == VIT_CIFAR:
        return vit_cifar(num_classes, in_channels, image_size)
    if is_user(arch):
        return _user(arch, num_classes, in_channels, image_size)
    return _torchvision(arch, num_classes, in_channels, image_size)
