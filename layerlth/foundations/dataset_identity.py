"""A streamed dataset's identity in a trial hash: a digest of what it holds, not where it lies.

A dataset given as a directory (an ImageFolder tree, or WebDataset shards) enters the hash as
`stream:<digest>`, the digest of each split's class list and its images' names (`<class>/<stem>`)
and sizes: ImageNet copied to another disk keeps its trials' hashes and shares their dense runs,
and a copy with one file changed does not. Shards written by `layerlth shard` carry an index of
their members, which gives the digest of the folder they were written from; shards without one are
digested by their tar files' names and sizes. Listing is by names and sizes only (no image is read)
and done once per process and location.
"""

import functools
import hashlib
import json
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val")
SHARD_INDEX = "layerlth-shards.json"


def is_stream(name):
    """A dataset named by a directory (CIFAR names and .npz files are not streamed)."""
    return Path(str(name)).is_dir()


def list_folder(root):
    """{split: {class: [(stem, suffix, size)], sorted}} of an ImageFolder tree (no checks)."""
    root, found = Path(root), {}
    for split in SPLITS:
        folder = root / split
        classes = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        found[split] = {c.name: [(f.stem, f.suffix.lower(), f.stat().st_size) for f in sorted(c.iterdir())
                                 if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES] for c in classes}
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
    """`stream:<digest>` of the dataset in directory `location`."""
    root = Path(location)
    index = root / SHARD_INDEX
    if index.is_file():
        listed = json.loads(index.read_text())
        items = {s: [(m[0], m[3]) for shard in listed["splits"][s] for m in shard] for s in SPLITS}
        return f"stream:{digest(listed['classes'], items)}"
    tars = {s: sorted(root.glob(f"{s}-*.tar")) for s in SPLITS}
    if any(tars.values()):
        return f"stream:{digest([], {s: [(p.name, p.stat().st_size) for p in tars[s]] for s in SPLITS})}"
    listed = list_folder(root)
    items = {s: [(f"{c}/{stem}", size) for c, files in listed[s].items() for stem, _, size in files] for s in SPLITS}
    return f"stream:{digest(sorted(listed['train']), items)}"
