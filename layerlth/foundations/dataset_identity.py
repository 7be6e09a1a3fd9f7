"""A streamed dataset's identity in a trial hash: a digest of what it holds, not where it lies.

A dataset given as a directory or an s3:// prefix (an ImageFolder tree, or WebDataset shards)
enters the hash as `stream:<digest>`, the digest of each split's class list and its images' names
(`<class>/<stem>`) and sizes: ImageNet copied to another disk keeps its trials' hashes and shares their dense runs,
and a copy with one file changed does not. Shards written by `layerlth shard` carry an index of
their members, which gives the digest of the folder they were written from; shards without one are
digested by their tar files' names and sizes. Listing is by names and sizes only (no image is read)
and done once per process and location.
"""

import fnmatch
import functools
import hashlib
import json
from pathlib import Path

from layerlth.foundations.storage import Storage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val")
SHARD_INDEX = "layerlth-shards.json"


BUILT_IN = ("cifar10", "cifar100", "digits", "synthetic")  # names, whatever folders lie about


class DatasetUnreadable(ValueError):
    """A streamed dataset's location that cannot be listed (a bucket or prefix that does not exist,
    no credentials): named in one line by every entry point, before anything trains."""


def list_files(storage):
    """[(name, size)] of `storage`, or `DatasetUnreadable` naming it and the reason in one line."""
    try:
        return storage.listing()
    except OSError as error:  # pyarrow's errors for a bucket or prefix it cannot read
        reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise DatasetUnreadable(f"cannot list the dataset at {storage.location!r}: {reason}") from error


def is_stream(name):
    """A dataset named by a directory or an s3:// prefix (built-in names and .npz files are not
    streamed, even where a folder of that name lies in the working directory)."""
    name = str(name)
    return name not in BUILT_IN and (name.startswith("s3://") or Path(name).is_dir())


def folder_tree(listing):
    """{split: {class: [(stem, suffix, size)]}} of an ImageFolder tree's files, from [(name, size)]
    (names relative to its root, '/'-separated; other files ignored)."""
    found = {split: {} for split in SPLITS}
    for name, size in sorted(listing):
        parts = name.split("/")
        suffix = Path(parts[-1]).suffix.lower()
        if len(parts) == 3 and parts[0] in SPLITS and suffix in IMAGE_SUFFIXES:
            found[parts[0]].setdefault(parts[1], []).append((Path(parts[2]).stem, suffix, size))
    return found


def digest(classes, items):
    """The digest of `classes` and {split: [(key, size)]}: the same for a folder and its shards."""
    found = hashlib.sha256(json.dumps(list(classes)).encode())
    for split in SPLITS:
        for key, size in items[split]:
            found.update(f"{split}\t{key}\t{size}\n".encode())
    return found.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def stream_identity(location):
    """`stream:<digest>` of the dataset in directory or s3:// prefix `location`."""
    storage = Storage(location)
    listing = list_files(storage)
    if SHARD_INDEX in {name for name, _ in listing}:
        listed = storage.read_json(SHARD_INDEX)
        items = {s: [(m[0], m[3]) for shard in listed["splits"][s] for m in shard] for s in SPLITS}
        return f"stream:{digest(listed['classes'], items)}"
    tars = {s: [(n, size) for n, size in listing if fnmatch.fnmatch(n, f"{s}-*.tar")] for s in SPLITS}
    if any(tars.values()):
        return f"stream:{digest([], tars)}"
    tree = folder_tree(listing)
    items = {s: [(f"{c}/{stem}", size) for c, files in tree[s].items() for stem, _, size in files] for s in SPLITS}
    return f"stream:{digest(sorted(tree['train']), items)}"
