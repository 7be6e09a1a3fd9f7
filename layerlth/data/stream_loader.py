"""Batches of a streamed dataset (`streams`): seeded order, decoding and ImageNet's augmentation in
DataLoader worker processes, uint8 batches out.

Order: an epoch permutes a split's groups with a generator seeded by (seed, epoch), the same on every
rank; rank r of `world` takes groups r, r + world, ...; each group's images are permuted by
(seed, epoch, group). DataLoader worker w of `workers` reads the rank's groups w, w + workers, ...
whole (a shard is read once, front to back) and the loader interleaves the workers' images in turn.
So the images of an epoch are a function of (seed, epoch, rank, world, workers): a resumed trial sees
exactly the epochs it would have seen, and a folder and its shards give the same batches.

Augmentation (training): RandomResizedCrop(image_size, scale 0.08-1, ratio 3/4-4/3) and a horizontal
flip, drawn from a generator seeded by the image's (seed, epoch, group, position); evaluation:
resize the short side to image_size / 0.875, centre crop. A corrupt image is skipped and counted
(`StreamBatches.skipped`), never fatal: one bad JPEG in 1.28 M should not end a 90-epoch run.
"""

import math

import torch

from layerlth.data.streams import decode

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
EVAL_CROP = 0.875  # the centre crop's share of the resized image (224 of 256)


def epoch_groups(count, seed, epoch, rank=0, world=1, train=True):
    """The group indices rank `rank` reads this epoch, in order."""
    order = torch.randperm(count, generator=_generator(seed, epoch)).tolist() if train else list(range(count))
    return order[rank::world]


def group_order(size, seed, epoch, group, train=True):
    if not train:
        return list(range(size))
    return torch.randperm(size, generator=_generator(seed, epoch, group)).tolist()


def _generator(*parts):
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2 ** 63)
    return torch.Generator().manual_seed(seed)


def crop_box(width, height, generator):
    """RandomResizedCrop's box (top, left, h, w), torchvision's rule, from `generator`."""
    area = width * height
    for _ in range(10):
        target = area * torch.empty(1).uniform_(*SCALE, generator=generator).item()
        log_ratio = torch.empty(1).uniform_(math.log(RATIO[0]), math.log(RATIO[1]), generator=generator)
        aspect = math.exp(log_ratio.item())
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    ratio = width / height  # the fallback: a centre crop within the ratio bounds
    w, h = (width, round(width / RATIO[1])) if ratio > RATIO[1] else (
        (round(height * RATIO[0]), height) if ratio < RATIO[0] else (width, height))
    return (height - h) // 2, (width - w) // 2, h, w


def transform(image, size, train, generator=None):
    """A PIL image to a uint8 (3, size, size) tensor, augmented for training."""
    from layerlth.foundations._torchvision import torchvision  # noqa: F401 - first: it loads on a CPU-only torch
    from torchvision.transforms.v2 import functional as F

    tensor = F.pil_to_tensor(image)
    if train:
        top, left, h, w = crop_box(image.width, image.height, generator)
        tensor = F.resized_crop(tensor, top, left, h, w, [size, size], antialias=True)
        if torch.rand(1, generator=generator).item() < 0.5:
            tensor = F.horizontal_flip(tensor)
        return tensor
    tensor = F.resize(tensor, round(size / EVAL_CROP), antialias=True)
    return F.center_crop(tensor, [size, size])


class StreamImages(torch.utils.data.IterableDataset):
    """One epoch of one split for one rank: (uint8 image or None when corrupt, label), in order."""

    def __init__(self, source, split, image_size, seed=0, epoch=0, rank=0, world=1):
        super().__init__()
        self.source, self.split, self.size = source, split, image_size
        self.seed, self.epoch, self.rank, self.world = seed, epoch, rank, world
        self.train = split == "train"

    def groups(self):
        return epoch_groups(len(self.source.groups(self.split)), self.seed, self.epoch, self.rank, self.world,
                            self.train)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for group in self.groups()[worker::workers]:
            pairs = self.source.read_group(self.split, group)
            for position in group_order(len(pairs), self.seed, self.epoch, group, self.train):
                item, data = pairs[position]
                image = decode(data)
                if image is None:
                    yield None, item.label
                    continue
                generator = _generator(self.seed, self.epoch, group, position) if self.train else None
                yield transform(image, self.size, self.train, generator), item.label


class StreamBatches:
    """(uint8 images (N, 3, S, S), int64 labels) batches of a `StreamImages` epoch, read by
    `workers` DataLoader processes (0: in this process). Corrupt images are dropped and counted."""

    def __init__(self, images, batch_size, workers=0):
        self.images, self.batch_size, self.workers = images, batch_size, workers
        self.skipped = 0

    def __iter__(self):
        loader = torch.utils.data.DataLoader(self.images, batch_size=None, num_workers=self.workers,
                                             persistent_workers=False, prefetch_factor=4 if self.workers else None)
        xs, ys = [], []
        for image, label in loader:
            if image is None:
                self.skipped += 1
                continue
            xs.append(image)
            ys.append(label)
            if len(xs) == self.batch_size:
                yield torch.stack(xs), torch.tensor(ys)
                xs, ys = [], []
        if xs:
            yield torch.stack(xs), torch.tensor(ys)
