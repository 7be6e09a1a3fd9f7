"""A streamed dataset (`streams`) as the training loop sees a dataset: its classes, image size,
channel statistics and batches, which `Batches(data, ...)` hands to `stream_batches` for it.

Images stay where they are; each epoch streams them through DataLoader workers (`stream_loader`),
and batches reach the device as uint8 and are normalised there, as the in-memory path does. The
epoch's order comes from the generator the loop passes (seeded by (seed, epoch)) and the rank.
"""

import math
import os

import torch

from layerlth.data.device_decode import Planned, assemble
from layerlth.data.stream_loader import DRAFT, RESIZE, StreamBatches, StreamImages
from layerlth.data.streams import open_source

DEFAULT_IMAGE_SIZE = 224
STATS_IMAGES = 500  # the first training images (centre crops) whose pixels give mean and std


def default_workers():
    """DataLoader processes that decode: one per core but one, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


class StreamData:
    def __init__(self, location, image_size=None, workers=None, rank=0, world=1, device="cpu", limits=None,
                 source=None, stats_size=None, decode_on="cpu"):
        self.location, self.source = str(location), source or open_source(location)
        self.size = image_size or DEFAULT_IMAGE_SIZE
        self.stats_size = stats_size or self.size  # one mean and std whatever size an epoch crops at
        self.decode_on = decode_on  # "cuda": JPEGs decoded on the device (`device_decode`)
        self.workers = default_workers() if workers is None else workers
        self.rank, self.world, self.device = rank, world, torch.device(device)
        self.limits = dict(limits or {})
        self.name, self.num_classes = os.path.basename(self.location.rstrip("/")), len(self.source.classes)
        self.skipped = 0  # corrupt images dropped so far, all epochs

    @property
    def transform_name(self):
        """How the pixels were made, as a row records it (`data_transform`)."""
        if self.decode_on == "cuda":
            return "nvjpeg+torch-bilinear-antialias"
        return RESIZE + ("+jpeg-draft" if DRAFT else "")

    @property
    def image_size(self):
        return (3, self.size, self.size)

    def count(self, split):
        total = len(self.source.items[split])
        limit = self.limits.get(split)
        return total if limit is None else min(limit, total)

    @property
    def train_size(self):
        return self.count("train")

    def _with(self, **changes):
        values = dict(location=self.location, image_size=self.size, workers=self.workers, rank=self.rank,
                      world=self.world, device=self.device, limits=self.limits, source=self.source,
                      stats_size=self.stats_size, decode_on=self.decode_on) | changes
        return StreamData(**values)

    def at_size(self, size):
        """The same images cropped at `size` px (progressive resizing), normalised as at this size."""
        return self._with(image_size=size)

    def subset(self, train=None, test=None):
        """The first `train` / `test` images of the listing (quick checks)."""
        limits = dict(self.limits)
        for split, value in (("train", train), ("val", test)):
            if value is not None:
                limits[split] = min(value, limits.get(split, value))
        return self._with(limits=limits)

    def to(self, device):
        return self._with(device=device)

    def shard(self, rank, world):
        """This dataset as rank `rank` of `world` data-parallel workers reads it."""
        return self._with(rank=rank, world=world)

    @property
    def channel_stats(self):
        """Per-channel mean and std, in [0, 255] units, of the first training images' centre crops
        (computed once per source and crop size: subsets and copies share them)."""
        cache, size = self.source.__dict__.setdefault("channel_stats", {}), self.stats_size
        if size not in cache:
            images = StreamImages(self.source, "train", size, limit=min(STATS_IMAGES, len(self.source.items["train"])),
                                  train=False)
            pixels = torch.cat([x.flatten(1) for x, _ in StreamBatches(images, 64, 0)], 0)  # (N, 3 * S * S)
            pixels = pixels.view(len(pixels), 3, -1).transpose(0, 1).flatten(1).double()
            cache[size] = (pixels.mean(1).float(), pixels.std(1).float())
        return cache[size]

    def stream_batches(self, batch_size, train, generator=None, augment=True, memory_format=None):
        """What `Batches` gives for this dataset: normalised float batches on the device."""
        split = "train" if train else "val"
        seed = generator.initial_seed() if generator is not None else 0
        images = StreamImages(self.source, split, self.size, seed=seed, rank=self.rank, world=self.world,
                              limit=self.count(split), train=train, augment=augment, decode_on=self.decode_on)
        exact = None
        if train and self.world > 1:  # every rank the same number of steps: DDP waits for all of them
            exact = min(images.images_of(r) for r in range(self.world)) // batch_size
            if exact == 0:
                raise ValueError(f"{self.location}: a rank of {self.world} gets fewer than batch_size={batch_size} "
                                 f"training images; use fewer workers, a smaller batch or more images")
        length = exact if exact is not None else math.ceil(self.count(split) / self.world / batch_size)
        return Normalised(StreamBatches(images, batch_size, self.workers, exact), self, memory_format, length,
                          images.augment)


class Normalised:
    """uint8 batches to normalised floats on the data's device; counts the skipped images."""

    def __init__(self, batches, data, memory_format, length, augment=False):
        self.batches, self.data, self.length, self.augment = batches, data, length, augment
        self.memory_format = memory_format or torch.contiguous_format

    def __len__(self):
        return self.length

    def __iter__(self):
        mean, std = (s.to(self.data.device)[:, None, None] for s in self.data.channel_stats)
        skipped = 0
        for x, y in self.batches:
            if isinstance(x, Planned):  # encoded: decoded, cropped and flipped on the device
                x, ok = assemble(x, self.data.size, self.augment, self.data.device)
                if not ok.all():  # `ok` is on the CPU: no device sync for a batch that all decoded
                    self.data.skipped += int((~ok).sum())
                    keep = ok.nonzero().view(-1)
                    x, y = x.index_select(0, keep.to(x.device)), y[keep]
                if len(y) < (2 if self.augment or self.batches.images.train else 1):
                    if self.batches.exact is not None:  # data-parallel ranks must all take every step
                        raise ValueError(f"{self.data.location}: a batch kept {len(y)} of its images after "
                                         f"skipping those that do not decode; data-parallel ranks step "
                                         f"together, so this rank cannot leave it out")
                    continue  # nothing left to train on (BN needs two images): its loss would be NaN
            x = x.to(self.data.device, non_blocking=True).float().sub_(mean).div_(std)
            yield x.contiguous(memory_format=self.memory_format), y.to(self.data.device, non_blocking=True)
            self.data.skipped += self.batches.skipped - skipped
            skipped = self.batches.skipped
        self.data.skipped += self.batches.skipped - skipped
