"""Batches of a streamed dataset (`streams`): seeded order, decoding and ImageNet's augmentation in
DataLoader worker processes, uint8 batches out.

Order: an epoch permutes a split's groups with a generator seeded by (seed, epoch), the same on every
rank; rank r of `world` takes groups r, r + world, ...; each group's images are permuted by
(seed, epoch, group). DataLoader worker w of `workers` reads the rank's groups w, w + workers, ...
whole (a shard is read once, front to back) and hands each over decoded; the loader takes the
workers' groups in turn, so the batches are a function of (seed, epoch, rank, world), whatever the
number of workers: a resumed trial sees exactly the epochs it would have seen, and a folder and its
shards give the same batches.

Augmentation (training): RandomResizedCrop(image_size, scale 0.08-1, ratio 3/4-4/3) and a horizontal
flip, drawn from a generator seeded by the image's (seed, epoch, group, position); evaluation:
resize the short side to image_size / 0.875, centre crop. A corrupt image is skipped and counted
(`StreamBatches.skipped`), never fatal: one bad JPEG in 1.28 M should not end a 90-epoch run.

Less work per image (`prepare`): the crop is drawn from the JPEG's header before decoding, and
where the crop would shrink by 2x or more libjpeg decodes at 1/2, 1/4 or 1/8 scale (Pillow's draft
mode, `DRAFT`); the crop is then resized by torch's uint8 bilinear antialiased kernel (`RESIZE`,
about twice Pillow's speed here) instead of Pillow's. Both change pixels, not which crop: the row
records them (`data_transform`); they depend on the image alone, so batches stay the same for any
number of workers.
"""

import io
import itertools
import math

import torch
import torch.nn.functional as F

from layerlth.data.device_decode import JPEG, PIXELS, Planned, eval_plan, for_the_device

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
EVAL_CROP = 0.875  # the centre crop's share of the resized image (224 of 256)
DRAFT = True  # JPEGs decoded at 1/2, 1/4 or 1/8 scale where the crop shrinks at least that much
RESIZE = "torch-bilinear-antialias-uint8"  # the resizer, as rows name it (`data_transform`)


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
    """A PIL image to a uint8 (3, size, size) tensor: augmented (`train`), or resized and centre-cropped."""
    x = _pixels(image)
    if not train:
        return _centre(x, size)
    box = crop_box(x.shape[2], x.shape[1], generator)
    return _crop(x, box, torch.rand(1, generator=generator).item() < 0.5, size)


def prepare(data, size, train, generator=None, draft=DRAFT):
    """Encoded bytes to their uint8 (3, size, size) crop, or None when they do not decode. The
    crop and flip are drawn from the full size (the header's), as `transform` draws them; a JPEG
    is then decoded at the smallest scale that still holds the crop at `size` (`draft`)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            box = crop_box(width, height, generator) if train else None
            flip = train and torch.rand(1, generator=generator).item() < 0.5
            if draft and image.format == "JPEG":
                h, w = box[2:] if train else (min(width, height),) * 2
                wanted = size if train else round(size / EVAL_CROP)
                image.draft("RGB", (math.ceil(width * wanted / w), math.ceil(height * wanted / h)))
            x = _pixels(image if image.mode == "RGB" else image.convert("RGB"))  # convert would copy an RGB one
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    if not train:
        return _centre(x, size)
    return _crop(x, box, flip, size, x.shape[1] / height, x.shape[2] / width)  # scales: 1, or the draft's


def _crop(x, box, flip, size, sy=1.0, sx=1.0):
    """The crop `box` (top, left, h, w) of the full image, taken from `x` at scale (sy, sx),
    resized to size x size and flipped when `flip`."""
    top, left, h, w = box
    top, left = round(top * sy), round(left * sx)
    out = _resized(x[:, top:top + max(1, round(h * sy)), left:left + max(1, round(w * sx))], size, size)
    return (out.flip(2) if flip else out).contiguous()


def _centre(x, size):
    """Evaluation: the short side resized to size / EVAL_CROP, then the centre crop (`eval_plan`)."""
    height, width, top, left, _ = eval_plan(x.shape[2], x.shape[1], size, EVAL_CROP)
    return _resized(x, height, width)[:, top:top + size, left:left + size].contiguous()


def _resized(x, height, width):
    """uint8 (3, h, w) to (3, height, width): torch's bilinear antialiased uint8 kernel (it runs on
    the channels-last layout a decoded image has, without a float copy)."""
    return F.interpolate(x[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]


def _pixels(image):
    """A PIL image as a uint8 (3, H, W) view of its (H, W, 3) pixels."""
    import numpy as np

    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


class StreamImages(torch.utils.data.IterableDataset):
    """One epoch of one split for one rank, a group at a time (`read`), in the epoch's order. Only
    the listing's first `limit` images are read."""

    def __init__(self, source, split, image_size, seed=0, epoch=0, rank=0, world=1, limit=None, train=None,
                 augment=True, decode_on="cpu"):
        super().__init__()
        self.decode_on = decode_on  # "cuda": JPEGs travel encoded with their plans (`device_decode`)
        self.source, self.split, self.size = source, split, image_size
        self.seed, self.epoch, self.rank, self.world = seed, epoch, rank, world
        self.train = split == "train" if train is None else train  # shuffled order
        self.augment = self.train and augment
        self.sizes = [len(group) for group in source.groups(split)]
        self.starts = [0, *itertools.accumulate(self.sizes)][:-1]
        self.limit = sum(self.sizes) if limit is None else limit
        self.count = sum(1 for start in self.starts if start < self.limit)  # groups holding wanted images

    def groups(self, rank=None):
        rank = self.rank if rank is None else rank
        return epoch_groups(self.count, self.seed, self.epoch, rank, self.world, self.train)

    def images_of(self, rank):
        """How many images rank `rank` reads this epoch (from the listing: nothing is read)."""
        return sum(max(0, min(self.sizes[g], self.limit - self.starts[g])) for g in self.groups(rank))

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for group in self.groups()[worker::workers]:  # the loader takes the workers' groups in turn: in order
            yield self.read(group)

    def read(self, group):
        """The group's images, in this epoch's order, as one uint8 tensor (one transfer from a worker
        process, not one per image), their labels, and which decoded (a corrupt one is zeros)."""
        pairs = self.source.read_group(self.split, group)[:self.limit - self.starts[group]]
        order = group_order(len(pairs), self.seed, self.epoch, group, self.train)
        if self.decode_on == "cuda":
            return self._planned(pairs, order, group)
        images = torch.zeros(len(order), 3, self.size, self.size, dtype=torch.uint8)
        decoded = torch.zeros(len(order), dtype=torch.bool)
        for n, position in enumerate(order):
            generator = _generator(self.seed, self.epoch, group, position) if self.augment else None
            image = prepare(pairs[position][1], self.size, self.augment, generator)
            if image is not None:
                images[n], decoded[n] = image, True
        return images, torch.tensor([pairs[p][0].label for p in order]), decoded


    def _planned(self, pairs, order, group):
        """The group for decoding on the device: each JPEG's bytes with its crop and flip, drawn as
        `transform` draws them; other images (PNGs, CMYK or truncated JPEGs: `for_the_device`)
        decoded and transformed here, an image that does not decode skipped (decoded False), as a
        corrupt image is on the CPU path."""
        items, decoded = [], torch.ones(len(order), dtype=torch.bool)
        for n, position in enumerate(order):
            data = pairs[position][1]
            generator = _generator(self.seed, self.epoch, group, position) if self.augment else None
            size = for_the_device(data)
            if size is not None:
                plan = ([*crop_box(*size, generator), int(torch.rand(1, generator=generator).item() < 0.5)]
                        if self.augment else eval_plan(*size, self.size, EVAL_CROP))
                items.append((JPEG, data, plan))
                continue
            image = prepare(data, self.size, self.augment, generator)
            decoded[n] = image is not None
            pixels = image if image is not None else torch.zeros(3, self.size, self.size, dtype=torch.uint8)
            items.append((PIXELS, pixels, [0] * 5))
        return Planned.of(items), torch.tensor([pairs[p][0].label for p in order]), decoded


def _join(parts):
    """Images of several runs as one: uint8 tensors, or encoded images with their plans."""
    return Planned.cat(parts) if isinstance(parts[0], Planned) else torch.cat(parts)


class StreamBatches:
    """(uint8 images (N, 3, S, S), int64 labels) batches of a `StreamImages` epoch, decoded by
    `workers` DataLoader processes (0: in this process), the same batches for any number of them.
    Corrupt images are dropped and counted (`skipped`).

    `exact`: exactly that many full batches (data-parallel ranks must all take the same number of
    steps): the rest of the epoch is left, and a rank short of images (corrupt ones skipped) takes
    its first images again."""

    def __init__(self, images, batch_size, workers=0, exact=None):
        self.images, self.batch_size, self.workers, self.exact = images, batch_size, workers, exact
        self.skipped = 0

    def __iter__(self):
        if self.exact is None:
            yield from self._batches()
            return
        made, first = 0, []
        for batch in itertools.islice(self._batches(full_only=True), self.exact):
            first = first or list(zip(*batch))
            made += 1
            yield batch
        for _ in range(self.exact - made):  # short of images: the first ones again
            xs, ys = zip(*first[:self.batch_size])
            yield (Planned.cat(xs) if isinstance(xs[0], Planned) else torch.stack(xs)), torch.stack(ys)

    def _batches(self, full_only=False):
        loader = torch.utils.data.DataLoader(self.images, batch_size=None, num_workers=self.workers,
                                             prefetch_factor=2 if self.workers else None)
        xs, ys, held = [], [], 0
        for images, labels, decoded in loader:
            if not decoded.all():
                self.skipped += int((~decoded).sum())
                images, labels = images[decoded], labels[decoded]
            xs.append(images)
            ys.append(labels)
            held += len(labels)
            if held < self.batch_size:
                continue
            x, y = _join(xs), torch.cat(ys)  # once per group read: each batch below is a view of it
            while held >= self.batch_size:
                yield x[:self.batch_size], y[:self.batch_size]
                x, y, held = x[self.batch_size:], y[self.batch_size:], held - self.batch_size
            xs, ys = [x], [y]
        if held >= (2 if self.images.train else 1) and not full_only:  # BN cannot train on one image
            yield _join(xs), torch.cat(ys)
