"""The published robustness test sets, downloaded once into the data root and checked:

- CIFAR-10-C (Hendrycks & Dietterich 2019): `CIFAR-10-C.tar` of Zenodo record 2535967, md5-checked,
  extracted to `<root>/CIFAR-10-C/`: `<corruption>.npy` of 50,000 images (N, 32, 32, 3) uint8,
  severities 1..5 in blocks of 10,000, and `labels.npy`.
- CIFAR-10.2 (Lu et al. 2020): `cifar102_test.npz` of the authors' repository, 2,000 test images
  (`images` NHWC uint8, `labels`). The authors publish no checksum, so the file is checked for its
  keys, shapes and dtypes instead.
"""

from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from layerlth.data import DatasetUnavailable, default_root
from layerlth.foundations.atomic import write_json_atomic

CIFAR10C_URL = "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar"
CIFAR10C_FILE = "CIFAR-10-C.tar"
CIFAR10C_MD5 = "56bf5dcef84df0e2308c6dcbcbbd8499"  # as published with the Zenodo record
CIFAR10C_DIR = "CIFAR-10-C"
CIFAR102_URL = "https://github.com/modestyachts/cifar-10.2/raw/master/cifar102_test.npz"
CIFAR102_FILE = "cifar102_test.npz"
CIFAR102_IMAGES = 2000
VERIFIED = ".verified.json"  # written last: the archive was checked and fully extracted


def _root(root):
    return Path(root or default_root())


def _download(url, root, filename, md5):
    """torchvision's downloader: skips a cached file whose md5 matches, checks the md5 after download."""
    from layerlth.foundations._torchvision import torchvision

    torchvision.datasets.utils.download_url(url, str(root), filename, md5)


def _unavailable(what, filename, url, root, error):
    return DatasetUnavailable(
        f"{what} is not in {root} and could not be downloaded ({error}). Run once with internet access "
        f"(it is cached in {root}; set LAYERLTH_DATA or data_dir to move it), or download {url} and put "
        f"{filename} into {root}."
    )


def cifar10c_dir(root=None):
    """`<root>/CIFAR-10-C/`, downloading, checking and extracting the archive the first time."""
    root = _root(root)
    folder = root / CIFAR10C_DIR
    if (folder / VERIFIED).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{CIFAR10C_FILE}.lock")):  # concurrent trials wait for one download
        if (folder / VERIFIED).is_file():
            return folder
        try:
            _download(CIFAR10C_URL, root, CIFAR10C_FILE, CIFAR10C_MD5)
        except Exception as error:  # no network, HTTP error, or a file whose md5 does not match
            raise _unavailable("CIFAR-10-C", CIFAR10C_FILE, CIFAR10C_URL, root, error) from error
        from layerlth.foundations._torchvision import torchvision

        torchvision.datasets.utils.extract_archive(str(root / CIFAR10C_FILE), str(root))
        write_json_atomic({"file": CIFAR10C_FILE, "md5": CIFAR10C_MD5}, folder / VERIFIED)
    return folder


def cifar102(root=None):
    """CIFAR-10.2's test set as (images (N, 3, 32, 32) uint8, labels int64) tensors."""
    root = _root(root)
    path = root / CIFAR102_FILE
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / f".{CIFAR102_FILE}.lock")):
            try:
                _download(CIFAR102_URL, root, CIFAR102_FILE, None)  # no published checksum
            except Exception as error:
                raise _unavailable("CIFAR-10.2", CIFAR102_FILE, CIFAR102_URL, root, error) from error
    return read_cifar102(path)


def read_cifar102(path):
    with np.load(path) as arrays:
        missing = [k for k in ("images", "labels") if k not in arrays]
        if missing:
            raise ValueError(f"{path} lacks arrays {missing}; CIFAR-10.2's {CIFAR102_FILE} has images and labels")
        images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8 or images.shape[1:] != (32, 32, 3) or len(labels) != len(images):
        raise ValueError(f"{path}: expected images (N, 32, 32, 3) uint8 with one label each, got "
                         f"{images.dtype} {images.shape} and {len(labels)} labels; is it CIFAR-10.2's {CIFAR102_FILE}?")
    if len(images) != CIFAR102_IMAGES or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: CIFAR-10.2's test set has {CIFAR102_IMAGES} images of labels 0..9, got "
                         f"{len(images)} images of labels {labels.min()}..{labels.max()}")
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels.astype(np.int64))
