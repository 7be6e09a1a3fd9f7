"""Where images come from: CIFAR-10/100 (downloaded), any .npz, scikit-learn's digits, synthetic
(all held in memory), or a directory of images that streams (`stream_data`: ImageFolder or shards)."""

import functools
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from layerlth.data.images import ImageData
from layerlth.foundations.dataset_identity import BUILT_IN, is_stream

NAMES = BUILT_IN
HELP = ("cifar10, cifar100, digits, synthetic, a path to an .npz with train_x/train_y/test_x/test_y, or a "
        "directory or s3:// prefix of images that stream (train/<class>/* and val/<class>/*, or train-*.tar and "
        "val-*.tar shards)")
NPZ_KEYS = ("train_x", "train_y", "test_x", "test_y")


class DatasetUnavailable(RuntimeError):
    """The dataset exists but cannot be had here; the message says how to get it."""


def default_root():
    return Path(os.environ.get("LAYERLTH_DATA", Path.home() / ".cache" / "layerlth" / "data"))


def check_dataset(name):
    """Fail early on a name that is neither known nor an existing .npz file or image directory."""
    if name in NAMES:
        return name
    if is_stream(name):
        from layerlth.data.streams import open_source

        open_source(name)  # its layout, classes and images (names only) checked now
        return name
    if str(name).endswith(".npz"):
        if not Path(name).is_file():
            raise DatasetUnavailable(f"dataset file {name!r} does not exist; pass the path of an .npz with {NPZ_KEYS}")
        return name
    raise ValueError(f"unknown dataset {name!r}; allowed: {HELP}")


_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "digits": (1, 8, 8), "synthetic": (3, 32, 32)}


def image_shape(name, image_size=None):
    """(C, H, W) of the dataset's images without loading it (an .npz: read from its header; a
    streamed directory: its crops, `image_size` square), so a network can be validated for the
    images it will see before any data is read."""
    if is_stream(name):
        from layerlth.data.stream_data import DEFAULT_IMAGE_SIZE

        size = image_size or DEFAULT_IMAGE_SIZE
        return (3, size, size)
    check_dataset(name)
    if name in _SHAPES:
        return _SHAPES[name]
    try:
        with zipfile.ZipFile(name) as archive, archive.open("train_x.npy") as header:
            version = np.lib.format.read_magic(header)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = read(header)[0]
        if len(shape) == 4:
            return tuple(int(n) for n in shape[1:])
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        pass
    return _npz(Path(name)).image_size  # a file the header does not describe well: the loader says what is wrong


def load_dataset(name, root=None, image_size=None, workers=None, decode_on="cpu"):
    """The dataset `name`; `image_size`, `workers` (DataLoader processes) and `decode_on` (where JPEGs
    are decoded) only for a dataset that streams."""
    check_dataset(name)
    if is_stream(name):
        from layerlth.data.stream_data import StreamData

        return StreamData(name, image_size, workers, decode_on=decode_on)
    if name in ("cifar10", "cifar100"):
        return _held(name, str(Path(root or default_root())), None)
    return _held(name, None, _stamp(Path(name)) if name not in ("digits", "synthetic") else None)


def _stamp(path):
    """A file's size and modification time: a changed file is read again."""
    stat = path.stat() if path.is_file() else None
    return (stat.st_size, stat.st_mtime_ns) if stat else None


@functools.lru_cache(maxsize=4)
def _held(name, root, stamp):
    """A dataset held in memory, read once per process: the trials of a pack (and a reused worker's
    next trials) share its tensors, and with `ImageData.to` its copy on the device."""
    if name in ("cifar10", "cifar100"):
        return _cifar(name, Path(root))
    if name == "digits":
        return _digits()
    if name == "synthetic":
        return synthetic()
    return _npz(Path(name))


def _cifar(name, root):
    from layerlth.foundations._torchvision import torchvision

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
    """Images (N, C, H, W) uint8 with C 1 or 3, integer labels 0..C-1, the same classes in both splits."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in NPZ_KEYS if k not in arrays]
            if missing:
                raise ValueError(f"{path} lacks arrays {missing}; an image .npz needs {NPZ_KEYS}")
            loaded = {k: arrays[k] for k in NPZ_KEYS}
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as error:
        if "lacks arrays" in str(error):
            raise
        raise ValueError(f"{path} is not a readable .npz ({type(error).__name__}: {error}); write it with "
                         f"numpy.savez(path, train_x=..., train_y=..., test_x=..., test_y=...)") from error
    for split in ("train", "test"):
        _check_images(path, split, loaded[f"{split}_x"])
        _check_labels(path, split, loaded[f"{split}_y"], len(loaded[f"{split}_x"]))
    classes = np.unique(loaded["train_y"])
    num_classes = len(classes)
    if not np.array_equal(classes, np.arange(num_classes)):
        raise ValueError(f"{path}: train_y must use every class 0..C-1, but its classes are {_short(classes)}")
    extra = np.setdiff1d(np.unique(loaded["test_y"]), classes)
    lacking = np.setdiff1d(classes, np.unique(loaded["test_y"]))
    if len(extra) or len(lacking):
        raise ValueError(f"{path}: train and test must have the same classes; test_y adds {_short(extra)} "
                         f"and lacks {_short(lacking)} (train has 0..{num_classes - 1})")
    tensors = [torch.from_numpy(np.ascontiguousarray(loaded[k])) for k in NPZ_KEYS]
    height = tensors[0].shape[-1]
    return ImageData(path.stem, *tensors, num_classes=num_classes, pad=max(1, height // 8), flip=True)


def _short(values, most=10):
    values = [int(v) for v in values]
    return str(values if len(values) <= most else values[:most] + ["..."])


def _check_images(path, split, x):
    name = f"{path}: {split}_x"
    if x.ndim == 3:
        raise ValueError(f"{name} has shape {x.shape}: images need a channel axis, (N, C, H, W); for grey "
                         f"images add it with x[:, None]")
    if x.ndim != 4:
        raise ValueError(f"{name} has shape {x.shape}; expected (N, C, H, W) with C = 1 or 3")
    if not len(x):
        raise ValueError(f"{name} is empty: both splits need images")
    if x.dtype != np.uint8:
        raise ValueError(f"{name} is {x.dtype}; expected uint8 pixels in 0..255")
    if x.shape[1] not in (1, 3):
        hint = ("; it looks like (N, H, W, C): transpose with x.transpose(0, 3, 1, 2)"
                if x.shape[3] in (1, 3) else "")
        raise ValueError(f"{name} has shape {x.shape}: channels (1 or 3) must be on axis 1, (N, C, H, W){hint}")


def _check_labels(path, split, y, count):
    name = f"{path}: {split}_y"
    if y.ndim != 1 or len(y) != count:
        raise ValueError(f"{name} has shape {y.shape}; expected one label per image, ({count},)")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} is {y.dtype}; labels must be integers 0..C-1 (convert whole-number labels "
                         f"with y.astype(numpy.int64))")
    if y.min() < 0:
        raise ValueError(f"{name} has negative labels (min {int(y.min())}); labels must be 0..C-1")


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
