"""Datasets too large for memory, read as they stream: an ImageFolder tree or WebDataset shards.

A source lists each split's images in *groups* read whole, one after another: a shard of
`train-*.tar` / `val-*.tar` (read with the `webdataset` library), or, for a folder
(`train/<class>/*`, `val/<class>/*`), its sorted files taken `GROUP` at a time, the groups
`layerlth shard` writes as shards. A folder and its shards therefore list the same images, labels
and groups, and a seed gives both the same order (`stream_loader`).

Identity: `fingerprint()` digests each split's class list and its images' names and sizes, not the
location, so a copy (S3 to a local disk) keeps its trials' hashes and a changed copy does not.
"""

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val")
GROUP = 1000  # images per group of a folder, and per shard `layerlth shard` writes
INDEX = "layerlth-shards.json"  # the classes and members `layerlth shard` wrote, beside its shards
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
    """The folder or shard source at `location` (a local directory), checked before any use."""
    root = Path(location)
    if not root.is_dir():
        raise StreamError(f"dataset folder {location!r} does not exist; {LAYOUT}")
    if any(root.glob("train-*.tar")) or any(root.glob("val-*.tar")):
        return ShardSource(root)
    return FolderSource(root)


class FolderSource:
    """train/<class>/* and val/<class>/*; classes are train's subfolders, sorted."""

    kind = "folder"

    def __init__(self, root):
        self.root = Path(root)
        missing = [s for s in SPLITS if not (self.root / s).is_dir()]
        if missing:
            raise StreamError(f"{self.root} has no {' or '.join(f'{s}/' for s in missing)} folder; {LAYOUT}")
        self.classes = sorted(p.name for p in (self.root / "train").iterdir() if p.is_dir())
        if not self.classes:
            raise StreamError(f"{self.root / 'train'} has no class folders; {LAYOUT}")
        self.items = {split: self._list(split) for split in SPLITS}

    def _list(self, split):
        folders = sorted(p for p in (self.root / split).iterdir() if p.is_dir())
        unknown = [p.name for p in folders if p.name not in self.classes]
        if unknown:
            raise StreamError(f"{self.root / split} has classes that train/ lacks: {unknown[:5]}")
        items = []
        for folder in folders:
            files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not files:
                raise StreamError(f"class folder {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            label = self.classes.index(folder.name)
            items += [Item(f"{folder.name}/{f.stem}", f.suffix.lower(), label, f.stat().st_size) for f in files]
        if not items:
            raise StreamError(f"{self.root / split} holds no images; {LAYOUT}")
        return items

    def groups(self, split):
        items = self.items[split]
        return [items[start:start + GROUP] for start in range(0, len(items), GROUP)]

    def read_group(self, split, index):
        """[(item, encoded bytes)] of one group, in its listed order."""
        return [(item, (self.root / split / f"{item.key}{item.suffix}").read_bytes())
                for item in self.groups(split)[index]]


class ShardSource:
    """train-*.tar and val-*.tar; the classes and members from `layerlth shard`'s index where it
    wrote one, else listed by reading every shard once."""

    kind = "shards"

    def __init__(self, root):
        self.root = Path(root)
        self.shards = {split: sorted(self.root.glob(f"{split}-*.tar")) for split in SPLITS}
        missing = [s for s in SPLITS if not self.shards[s]]
        if missing:
            raise StreamError(f"{self.root} has no {' or '.join(f'{s}-*.tar' for s in missing)} shards; {LAYOUT}")
        index = self.root / INDEX
        listed = json.loads(index.read_text()) if index.is_file() else self._scan()
        self.classes = listed["classes"]
        self.members = {split: [[Item(*item) for item in shard] for shard in listed["splits"][split]]
                        for split in SPLITS}

    def _scan(self):
        splits = {split: [[(i.key, i.suffix, i.label, i.size) for i, _ in read_shard(path)]
                          for path in self.shards[split]] for split in SPLITS}
        labels = {item[2] for shard in splits["train"] for item in shard}
        return {"classes": [str(n) for n in range(max(labels) + 1)], "splits": splits}

    @property
    def items(self):
        return {split: [item for shard in self.members[split] for item in shard] for split in SPLITS}

    def groups(self, split):
        return self.members[split]

    def read_group(self, split, index):
        return read_shard(self.shards[split][index])


def read_shard(path):
    """[(item, encoded bytes)] of one shard, in its order, through webdataset's tar reader."""
    import webdataset as wds

    found = []
    for sample in wds.WebDataset(str(path), shardshuffle=False, empty_check=False):
        suffix = next((s for s in ("jpg", "jpeg", "png") if s in sample), None)
        if suffix is None or "cls" not in sample:
            raise StreamError(f"{path}: sample {sample['__key__']!r} lacks an image (.jpg/.png) or its .cls label")
        data = sample[suffix]
        found.append((Item(sample["__key__"], f".{suffix}", int(sample["cls"]), len(data)), data))
    return found


def fingerprint(source):
    """A digest of each split's classes, image names and sizes: the dataset's identity in a trial hash."""
    digest = hashlib.sha256(json.dumps(source.classes).encode())
    for split in SPLITS:
        for item in source.items[split]:
            digest.update(f"{split}\t{item.key}\t{item.label}\t{item.size}\n".encode())
    return digest.hexdigest()[:16]


def write_shards(source, target, per_shard=GROUP):
    """`layerlth shard`: the source's splits as WebDataset shards in `target` (KEY.<ext>, KEY.cls),
    `per_shard` images each, with an index of classes and members; returns the shard paths."""
    import webdataset as wds

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written, listed = [], {"classes": source.classes, "splits": {}}
    for split in SPLITS:
        items = [pair for index in range(len(source.groups(split))) for pair in source.read_group(split, index)]
        shards = [items[start:start + per_shard] for start in range(0, len(items), per_shard)]
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


def decode(data):
    """Encoded image bytes to an RGB PIL image, or None when they do not decode (a corrupt file)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
