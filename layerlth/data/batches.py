"""Batches as tensor ops on the training device: no per-image Python, no DataLoader workers.

The whole uint8 dataset lives on the device; each batch is gathered, padded, randomly cropped,
flipped and normalised there. Randomness comes from a CPU generator so a seed gives the same
batches on any device. A training epoch draws every batch's crop offsets and flips at its start, in
the order the batches use them (so the values are those drawn batch by batch), and moves them to the
device in one copy: a copy from pageable memory waits for the device, and three of them per batch
held back the packs that feed several graphed runs from one loop.
"""

import torch
import torch.nn.functional as F


def random_crop(x, pad, generator):
    """Zero-pad by `pad` and take one random HxW window per image, by gather indices."""
    dy, dx = (torch.randint(2 * pad + 1, (len(x),), generator=generator).to(x.device) for _ in range(2))
    return crop_at(x, pad, dy, dx)


def crop_at(x, pad, dy, dx):
    """Zero-pad by `pad` and take the HxW window at (dy, dx) of each image, by gather indices."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(x, generator):
    return flip_where(x, (torch.rand(len(x), generator=generator) < 0.5).to(x.device))


def flip_where(x, flip):
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class Batches:
    """Iterates (inputs, labels) of one split, normalised floats on the data's device. A dataset
    that streams (`stream_data.StreamData`) makes its own batches: Batches(data, ...) returns them."""

    def __new__(cls, data, *args, **kwargs):
        if hasattr(data, "stream_batches"):
            return data.stream_batches(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, data, batch_size, train, generator=None, augment=True, memory_format=None):
        self.x, self.y = (data.train_x, data.train_y) if train else (data.test_x, data.test_y)
        mean, std = data.channel_stats
        self.mean, self.std = mean.to(self.x.device)[:, None, None], std.to(self.x.device)[:, None, None]
        self.batch_size, self.train, self.generator = batch_size, train, generator
        self.pad, self.flip = (data.pad, data.flip) if (train and augment) else (0, False)
        self.memory_format = memory_format or torch.contiguous_format

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        for step in self.plan():
            yield self.make(*step)

    def plan(self):
        """The epoch's batches as what makes them: (image indices, crop rows, crop columns, flips;
        None where unused) on the device. A pack makes several members' batches from their plans
        at once (`batched`)."""
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        sizes = [min(self.batch_size, n - start) for start in range(0, n, self.batch_size)]
        if self.train:  # BN cannot train on a single image
            sizes = [size for size in sizes if size >= 2]
        draws = self._draws(sizes)
        order = order.to(self.x.device)
        for start, size in zip(range(0, n, self.batch_size), sizes):
            crop = (next(draws), next(draws)) if self.pad else (None, None)
            yield order[start : start + size], *crop, next(draws).bool() if self.flip else None

    def make(self, index, dy, dx, flip):
        """The batch of those images: gathered, cropped, flipped, normalised."""
        x = self.x[index]
        if self.pad:
            x = crop_at(x, self.pad, dy, dx)
        if self.flip:
            x = flip_where(x, flip)
        # in the statistics' dtype: float32, or float64 where a test asks for it
        x = ((x.to(self.mean.dtype) - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        return x, self.y[index]

    def shares_making_with(self, other):
        """Whether one `make` can make both's batches: the same images, augmentation and statistics."""
        return (self.x.data_ptr() == other.x.data_ptr() and self.x.shape == other.x.shape
                and (self.pad, self.flip) == (other.pad, other.flip) and torch.equal(self.mean, other.mean)
                and torch.equal(self.std, other.std))

    def _draws(self, sizes):
        """Each batch's crop rows, crop columns and flips (those it uses), as `random_crop` and
        `random_flip` draw them batch by batch, on the device after one copy; in the order used."""
        parts = []
        for size in sizes:
            if self.pad:
                parts += [torch.randint(2 * self.pad + 1, (size,), generator=self.generator) for _ in range(2)]
            if self.flip:
                parts.append((torch.rand(size, generator=self.generator) < 0.5).long())
        if not parts:
            return iter(())
        return iter(torch.cat(parts).to(self.x.device).split([len(p) for p in parts]))


def batched(batches, steps):
    """Several members' batches of one step made by one set of ops: `steps` are their plans' next
    items (all made by `batches[0]`, which `shares_making_with` each). Returns (inputs (k x N, ...)
    in member order, labels (k, N)); each member's part equals its own `make`, bitwise (every op
    works image by image)."""
    joined = [None if part[0] is None else torch.cat(part) for part in zip(*steps)]
    x, y = batches[0].make(*joined)
    return x, y.view(len(steps), -1)
