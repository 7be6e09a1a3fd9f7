"""Where images come from: CIFAR-10/100 (downloaded), any .npz, scikit-learn's digits, synthetic."""

import os
from pathlib import Path

import numpy as np
import torch

from layerlth.data.images import ImageData

NAMES = ("cifar10", "cifar100", "digits", "synthetic")
HELP = "cifar10, cifar100, digits, synthetic, or a path to an .npz with train_x/train_y/test_x/test_y"
NPZ_KEYS = ("train_x", "train_y", "test_x", "test_y")


class DatasetUnavailable(RuntimeError):
    """The dataset exists but cannot be had here; the message says how to get it."""


def default_root():
    return Path(os.environ.get("LAYERLTH_DATA", Path.home() / ".cache" / "layerlth" / "data"))


def check_dataset(name):
    """Fail early on a name that is neither known nor an existing .npz file."""
    if name in NAMES:
        return name
    if str(name).endswith(".npz"):
        if not Path(name).is_file():
            raise DatasetUnavailable(f"dataset file {name!r} does not exist; pass the path of an .npz with {NPZ_KEYS}")
        return name
    raise ValueError(f"unknown dataset {name!r}; allowed: {HELP}")


def load_dataset(name, root=None):
    check_dataset(name)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, Path(root or default_root()))
    if name == "digits":
        return _digits()
    if name == "synthetic":
        return synthetic()
    return _npz(Path(name))


def _cifar(name, root):
    from layerlth._torchvision import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:  # torchvision checks the archive's md5 and skips the download when it is cached
        splits = [cls(str(root), train=train, download=True) for train in (True, False)]
    except Exception as error:
        raise DatasetUnavailable(
            f"{name} is not in {root} and could not be downloaded ({error}). Run once with internet "
            f"access (it is cached in {root}; set LAYERLTH_DATA or data_dir to move it), or copy "
            f"{cls.filename} into {root}, or pass your own images as an .npz with {NPZ_KEYS}."
        ) from error
    (train, test) = [(torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(s.targets)) for s in splits]
    return ImageData(name, *train, *test, num_classes=len(splits[0].classes), pad=4, flip=True)


def _npz(path):
    with np.load(path) as arrays:
        missing = [k for k in NPZ_KEYS if k not in arrays]
        if missing:
            raise ValueError(f"{path} lacks arrays {missing}; an image .npz needs {NPZ_KEYS}")
        tensors = [torch.from_numpy(arrays[k]) for k in NPZ_KEYS]
    num_classes = int(max(tensors[1].max(), tensors[3].max())) + 1
    height = tensors[0].shape[-1]
    return ImageData(path.stem, *tensors, num_classes=num_classes, pad=max(1, height // 8), flip=True)


def _digits(test_size=360):
    """scikit-learn's 1797 handwritten digits (8x8, 0..16), split by a fixed permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(np.round(digits.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    test, train = order[:test_size], order[test_size:]
    return ImageData("digits", x[train], y[train], x[test], y[test], num_classes=10, pad=1, flip=False)


def synthetic(num_classes=10, train=512, test=128, size=(3, 32, 32), seed=0):
    """Class templates plus noise: learnable, tiny, for unit tests of the machinery."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, *size, generator=g) * 255

    def draw(n):
        y = torch.randint(num_classes, (n,), generator=g)
        noise = torch.randn(n, *size, generator=g) * 40
        return (templates[y] + noise).clamp(0, 255).to(torch.uint8), y

    return ImageData("synthetic", *draw(train), *draw(test), num_classes=num_classes, pad=4, flip=True)
