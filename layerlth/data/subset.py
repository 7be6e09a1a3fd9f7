"""`cifar10-subset.npz`: 10% of CIFAR-10 (the first images of each official batch, in the official
order) for the slow tests and the benchmarks, found where it lies or cut from CIFAR-10 itself.

Looked for, in this order: `$LAYERLTH_TEST_DATA` (when set, the only place: a wrong path is an
error, not a quiet fallback), `../shared/data/` beside the project (CI's machines), the layerlth
data cache (`$LAYERLTH_DATA`, default `~/.cache/layerlth/data`).
`python -m layerlth.data.subset` (`make test-data`) downloads CIFAR-10 through torchvision into the
cache and cuts the subset there; the file it writes has the published sha256, byte for byte.
"""

import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from layerlth.data.sources import default_root

NAME = "cifar10-subset.npz"
SHA256 = "2f410f58a4fbb030966ad5aaebac7a28cfa0bc611fec4a0e10443530b959cfc9"
ARRAYS_SHA256 = "599f8f7719efc7c0547d3aaca415c7a14f36a33f68ad91c1c7b394abd4e4b0c6"  # of `arrays_digest`
TRAIN_PER_BATCH = (1102, 1017, 1017, 1017, 1017)  # data_batch_1..5: 5170 images
TEST_IMAGES = 1017  # the first of test_batch
BATCH_SIZE = 10_000  # images per official batch
HOW_TO_GET = (f"run `make test-data` (downloads CIFAR-10, 163 MB, and cuts {NAME} into the layerlth "
              f"data cache) or set LAYERLTH_TEST_DATA to a copy of {NAME}")


def places(project=None):
    """Where the subset may lie, in the order it is looked for."""
    if os.environ.get("LAYERLTH_TEST_DATA"):
        return [Path(os.environ["LAYERLTH_TEST_DATA"])]
    project = Path(project) if project else Path(__file__).resolve().parents[2]
    return [project.parent / "shared" / "data" / NAME, default_root() / NAME]


def find_subset(project=None):
    """The first place holding the subset, or None."""
    return next((path for path in places(project) if path.is_file()), None)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def arrays_digest(arrays):
    """sha256 of the four arrays' bytes, in NPZ_KEYS order: what the file's hash stands for."""
    digest = hashlib.sha256()
    for key in ("train_x", "train_y", "test_x", "test_y"):
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def cut(train_x, train_y, test_x, test_y):
    """The subset's four arrays from CIFAR-10's (train: data_batch_1..5 concatenated, N x 3 x 32 x 32)."""
    starts = [BATCH_SIZE * b for b in range(len(TRAIN_PER_BATCH))]
    rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, TRAIN_PER_BATCH)])
    return {"train_x": np.ascontiguousarray(train_x[rows], np.uint8), "train_y": np.asarray(train_y, np.uint8)[rows],
            "test_x": np.ascontiguousarray(test_x[:TEST_IMAGES], np.uint8),
            "test_y": np.asarray(test_y, np.uint8)[:TEST_IMAGES]}


def make_subset(root=None):
    """Download CIFAR-10 into `root` (default: the data cache), write the subset there; its path."""
    from layerlth.data.sources import load_dataset

    root = Path(root or default_root())
    data = load_dataset("cifar10", root)  # torchvision: checks the archive's md5, skips a cached download
    arrays = cut(data.train_x.numpy(), data.train_y.numpy(), data.test_x.numpy(), data.test_y.numpy())
    if arrays_digest(arrays) != ARRAYS_SHA256:
        raise RuntimeError(f"the CIFAR-10 in {root} does not give the published subset's images "
                           f"(arrays sha256 {arrays_digest(arrays)}, expected {ARRAYS_SHA256})")
    return write(arrays, root / NAME)


def write(arrays, target):
    """Write the subset atomically; say so when another zlib compressed the same arrays differently."""
    partial = target.with_suffix(".partial.npz")
    np.savez_compressed(partial, **arrays)  # zip entries dated 1980-01-01: the same bytes every time
    found = sha256(partial)
    if found != SHA256:
        print(f"note: {target.name} has sha256 {found}, not {SHA256}: the same images (checked), "
              f"compressed by another zlib", file=sys.stderr)
    os.replace(partial, target)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m layerlth.data.subset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="where CIFAR-10 and the subset go (default: the layerlth data cache)")
    parser.add_argument("--where", action="store_true", help="only print where the subset is found")
    parser.add_argument("--force", action="store_true", help="cut it again even where one is found")
    args = parser.parse_args(argv)
    found = find_subset()
    if args.where:
        print(found or f"not found in {', '.join(map(str, places()))}: {HOW_TO_GET}")
        return 0 if found else 1
    if found and not args.force:
        print(f"{found} is there already (sha256 {sha256(found)}); --force cuts it again")
        return 0
    path = make_subset(args.root)
    print(f"{path} (sha256 {sha256(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
