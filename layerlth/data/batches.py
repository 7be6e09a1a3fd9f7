"""Batches as tensor ops on the training device: no per-image Python, no DataLoader workers.

The whole uint8 dataset lives on the device; each batch is gathered, padded, randomly cropped,
flipped and normalised there. Randomness comes from a CPU generator so a seed gives the same
batches on any device.
"""

import torch
import torch.nn.functional as F


def random_crop(x, pad, generator):
    """Zero-pad by `pad` and take one random HxW window per image, by gather indices."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(x, generator):
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class Batches:
    """Iterates (inputs, labels) of one split, normalised floats on the data's device."""

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
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        order = order.to(self.x.device)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            if self.train and len(index) < 2:  # BN cannot train on a single image
                continue
            x = self.x[index]
            if self.pad:
                x = random_crop(x, self.pad, self.generator)
            if self.flip:
                x = random_flip(x, self.generator)
            x = ((x.float() - self.mean) / self.std).contiguous(memory_format=self.memory_format)
            yield x, self.y[index]
