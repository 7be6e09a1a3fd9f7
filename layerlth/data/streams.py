"""Datasets too large for memory, read as they stream: an ImageFolder tree or WebDataset shards.

A source lists each split's images in *groups* read whole, one after another: a shard of
`train-*.tar` / `val-*.tar` (read with the `webdataset` library), or, for a folder
(`train/<class>/*`, `val/<class>/*`), its sorted files taken `group_size` at a time (1,000, or a
sixteenth of a small split, so that data-parallel ranks each get groups), the groups `layerlth
shard` writes as shards. A folder and its shards therefore list the same images, labels
and groups, and a seed gives both the same order (`stream_loader`).

Identity: `fingerprint()` digests each split's class list and its images' names and sizes, not the
location, so a copy (S3 to a local disk) keeps its trials' hashes and a changed copy does not.

From an object store (s3://): a shard streams through webdataset's tar reader as it downloads (no
temporary copy); a folder's group is read with `READERS` concurrent requests. A group that cannot
be read (a shard deleted mid-epoch or truncated, a request that fails) is tried `TRIES` times with
a growing pause, then named in one line (`StreamError`): the trial fails, it never hangs.
"""

import concurrent.futures
import fnmatch
import functools
import io
import json
import logging
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from layerlth.foundations.dataset_identity import (
    IMAGE_SUFFIXES,
    SPLITS,
    DatasetUnreadable,
    digest,
    folder_tree,
    list_files,
)
from layerlth.foundations.dataset_identity import (
    SHARD_INDEX as INDEX,  # classes and members of `layerlth shard`
)
from layerlth.foundations.storage import Storage

GROUP = 1000  # images per group of a large folder, and per shard `layerlth shard` writes of it
READERS = 16  # concurrent requests reading a folder's group from an object store
TRIES, PAUSE_S = 3, 0.5  # reads of a group before it is named as unreadable; the first pause between
log = logging.getLogger("layerlth")
SMALL_GROUPS = 16  # a split of fewer than 16 x GROUP images is read in 16 groups


def group_size(count):
    """Images per group of a split of `count` images (and per shard `layerlth shard` writes)."""
    return min(GROUP, max(1, -(-count // SMALL_GROUPS)))
LAYOUT = ("a folder dataset holds train/<class>/* and val/<class>/* (JPEG or PNG), ImageNet's layout, "
          "or WebDataset shards train-*.tar and val-*.tar (members KEY.jpg/KEY.png and KEY.cls)")


class StreamError(ValueError):
    """A streamed dataset that cannot be read as one: the message names what and where."""


@dataclass(frozen=True)
class Item:
    """One image of a split: `key` is `<class>/<file stem>`, `size` its encoded bytes."""
    key: str
    suffix: str
    label: int
    size: int


def open_source(location):
    """The folder or shard source at `location` (a local directory or an s3:// prefix), its layout
    checked and its images listed (names and sizes only) before any use. Listed once per process and
    location, as its identity is (`dataset_identity`): a grid's every trial validates its dataset, and
    ImageNet lists 1.28 M files; `open_source.cache_clear()` reads a changed one anew."""
    return _opened(Storage(location).location)


@functools.lru_cache(maxsize=8)
def _opened(location):
    storage = Storage(location)
    if storage.local and not Path(storage.location).is_dir():
        raise StreamError(f"dataset folder {location!r} does not exist; {LAYOUT}")
    try:
        listing = list_files(storage)
    except DatasetUnreadable as error:
        raise StreamError(str(error)) from error
    if not listing:
        raise StreamError(f"{location!r} holds no files (or cannot be read); {LAYOUT}")
    if any(fnmatch.fnmatch(name, f"{split}-*.tar") for name, _ in listing for split in SPLITS):
        return ShardSource(storage, listing)
    return FolderSource(storage, listing)


open_source.cache_clear = _opened.cache_clear


class FolderSource:
    """train/<class>/* and val/<class>/*; classes are train's subfolders, sorted."""

    kind = "folder"

    def __init__(self, storage, listing):
        self.storage, self.root = storage, storage.location
        tree = folder_tree(listing)
        if storage.local:  # class folders without an image, which a listing of files cannot show
            for split in SPLITS:
                folder = Path(self.root) / split
                for sub in (p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ():
                    tree[split].setdefault(sub.name, [])
        missing = [s for s in SPLITS if not tree[s] and not (storage.local and (Path(self.root) / s).is_dir())]
        if missing:
            raise StreamError(f"{self.root} has no {' or '.join(f'{s}/' for s in missing)} folder; {LAYOUT}")
        self.classes = sorted(tree["train"])
        if not self.classes:
            raise StreamError(f"{self.storage.path('train')} has no class folders; {LAYOUT}")
        self.items = {split: self._items(split, dict(sorted(tree[split].items()))) for split in SPLITS}

    def _items(self, split, classes):
        unknown = [name for name in classes if name not in self.classes]
        if unknown:
            raise StreamError(f"{self.storage.path(split)} has classes that train/ lacks: {unknown[:5]}")
        empty = [name for name, files in classes.items() if not files]
        if empty:
            more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
            raise StreamError(f"class folder {self.storage.path(f'{split}/{empty[0]}')} holds no image "
                              f"({', '.join(IMAGE_SUFFIXES)}){more}")
        items = [Item(f"{name}/{stem}", suffix, self.classes.index(name), size)
                 for name, files in classes.items() for stem, suffix, size in files]
        if not items:
            raise StreamError(f"{self.storage.path(split)} holds no images; {LAYOUT}")
        return items

    def groups(self, split):
        items = self.items[split]
        size = group_size(len(items))
        return [items[start:start + size] for start in range(0, len(items), size)]

    def read_group(self, split, index):
        """[(item, encoded bytes)] of one group, in its listed order."""
        items = self.groups(split)[index]
        names = [f"{split}/{item.key}{item.suffix}" for item in items]
        if self.storage.local:
            return retried(lambda: [(i, self.storage.read_bytes(n)) for i, n in zip(items, names)],
                           f"{self.storage.path(split)} group {index}")
        with concurrent.futures.ThreadPoolExecutor(READERS) as pool:  # one request per image: many at once
            return retried(lambda: list(zip(items, pool.map(self.storage.read_bytes, names))),
                           f"{self.storage.path(split)} group {index}")


class ShardSource:
    """train-*.tar and val-*.tar; the classes and members from `layerlth shard`'s index where it
    wrote one, else listed by reading every shard once."""

    kind = "shards"

    def __init__(self, storage, listing):
        self.storage, self.root = storage, storage.location
        names = [name for name, _ in listing]
        self.shards = {split: sorted(n for n in names if fnmatch.fnmatch(n, f"{split}-*.tar")) for split in SPLITS}
        missing = [s for s in SPLITS if not self.shards[s]]
        if missing:
            raise StreamError(f"{self.root} has no {' or '.join(f'{s}-*.tar' for s in missing)} shards; {LAYOUT}")
        listed = storage.read_json(INDEX) if INDEX in names else self._scan()
        self.classes = listed["classes"]
        self.members = {split: [[Item(*item) for item in shard] for shard in listed["splits"][split]]
                        for split in SPLITS}

    def _scan(self):
        splits = {split: [[(i.key, i.suffix, i.label, i.size) for i, _ in self.read_shard(name)]
                          for name in self.shards[split]] for split in SPLITS}
        labels = {item[2] for shard in splits["train"] for item in shard}
        return {"classes": [str(n) for n in range(max(labels) + 1)], "splits": splits}

    @functools.cached_property
    def items(self):
        return {split: [item for shard in self.members[split] for item in shard] for split in SPLITS}

    def groups(self, split):
        return self.members[split]

    def read_group(self, split, index):
        return self.read_shard(self.shards[split][index], len(self.members[split][index]))

    def read_shard(self, name, expected=None):
        """[(item, encoded bytes)] of one shard, streamed from its storage (tried `TRIES` times);
        `expected`: its listed number of images (a tar cut at a member's boundary reads as a
        shorter archive, not as an error: the count tells)."""
        def read():
            with self.storage.open_stream(name) as stream:
                found = read_shard(stream, self.storage.path(name))
            if expected is not None and len(found) != expected:
                raise tarfile.ReadError(f"it holds {len(found)} of its {expected} listed images")
            return found
        return retried(read, self.storage.path(name))


def read_shard(stream, name):
    """[(item, encoded bytes)] of one shard read from the file object `stream`, in its order,
    through webdataset's tar reader (groups are split among ranks and workers by layerlth, so
    webdataset splits nothing). A shard that ends early raises `tarfile.ReadError`."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    found = []
    for sample in group_by_keys(tar_file_expander([{"stream": stream, "url": name}])):
        suffix = next((s for s in ("jpg", "jpeg", "png") if s in sample), None)
        if suffix is None or "cls" not in sample:
            raise StreamError(f"{name}: sample {sample['__key__']!r} lacks an image (.jpg/.png) or its .cls label")
        data = sample[suffix]
        found.append((Item(sample["__key__"], f".{suffix}", int(sample["cls"]), len(data)), data))
    return found


def retried(read, name):
    """`read()`, tried `TRIES` times with pauses of PAUSE_S, 2 PAUSE_S, ...; then `StreamError`
    naming `name` and the last error in one line."""
    for attempt in range(TRIES):
        try:
            return read()
        except (OSError, tarfile.TarError, ValueError, EOFError) as error:  # StreamError too: a cut header
            last = error
            if attempt + 1 < TRIES:
                log.warning("reading %s failed (%s: %s); trying again", name, type(error).__name__, error)
                time.sleep(PAUSE_S * 2 ** attempt)
    reason = str(last).splitlines()[0][:200] if str(last) else type(last).__name__
    raise StreamError(f"cannot read {name} after {TRIES} tries: {type(last).__name__}: {reason}") from last


def fingerprint(source):
    """A digest of each split's classes, image names and sizes (`dataset_identity`)."""
    return digest(source.classes, {split: [(i.key, i.size) for i in source.items[split]] for split in SPLITS})


def write_shards(source, target, per_shard=None, max_side=None):
    """`layerlth shard`: the source's splits as WebDataset shards in `target` (KEY.<ext>, KEY.cls),
    `per_shard` images each (default: a folder's groups, `group_size`), with an index of classes and
    members; returns the shard paths. `max_side`: each image whose longer side is larger is
    re-encoded with that longer side (FFCV's preparation: every later decode is cheaper), which
    changes the files and so the dataset's identity."""
    import webdataset as wds

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written, listed = [], {"classes": source.classes, "splits": {}}
    for split in SPLITS:
        items = [pair for index in range(len(source.groups(split))) for pair in source.read_group(split, index)]
        if max_side is not None:
            items = [shrunk(item, data, max_side) for item, data in items]
        size = per_shard or group_size(len(items))
        shards = [items[start:start + size] for start in range(0, len(items), size)]
        listed["splits"][split] = []
        for number, shard in enumerate(shards):
            path = target / f"{split}-{number:06d}.tar"
            with wds.TarWriter(str(path)) as writer:
                for item, data in shard:
                    writer.write({"__key__": item.key, item.suffix[1:]: data, "cls": str(item.label).encode()})
            listed["splits"][split].append([[i.key, i.suffix, i.label, i.size] for i, _ in shard])
            written.append(path)
    (target / INDEX).write_text(json.dumps(listed))
    return written


def shrunk(item, data, max_side):
    """(item, bytes) with the image's longer side at most `max_side` (antialiased; JPEG quality 90,
    a PNG stays a PNG); the same pair when it is small enough or does not decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) <= max_side:
                return item, data
            scale = max_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            small = image.convert("RGB").resize(size, Image.BILINEAR, reducing_gap=3.0)
    except (UnidentifiedImageError, OSError, ValueError):
        return item, data  # a corrupt image stays as it is: the trial skips and counts it
    buffer = io.BytesIO()
    small.save(buffer, format="PNG" if item.suffix == ".png" else "JPEG", quality=90)
    data = buffer.getvalue()
    return Item(item.key, item.suffix, item.label, len(data)), data


def decode(data):
    """Encoded image bytes to an RGB PIL image, or None when they do not decode (a corrupt file)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
