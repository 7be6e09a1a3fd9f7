"""A dataset as four tensors: uint8 images (N, C, H, W) and int64 labels, for train and test."""

from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass
class ImageData:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    pad: int  # pixels of zero padding before the random crop
    flip: bool  # random horizontal flips (wrong for digits)

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.ndim != 4 or len(x) != len(y):
                raise ValueError(
                    f"{self.name}: {split}_x must be uint8 (N, C, H, W) with one label per image, "
                    f"got {x.dtype} {tuple(x.shape)} and {len(y)} labels"
                )
        self.train_y, self.test_y = self.train_y.long(), self.test_y.long()

    @property
    def image_size(self):
        return tuple(self.train_x.shape[1:])

    @property
    def device(self):
        return self.train_x.device

    @property
    def train_size(self):
        return len(self.train_x)

    def to(self, device):
        """The dataset on `device`, copied once per device (the copy is kept: trials that share
        this dataset share its tensors there too; they only ever read them)."""
        copies = self.__dict__.setdefault("_copies", {})
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" are one device
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        if key not in copies:
            moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")}
            copies[key] = ImageData(self.name, **moved, num_classes=self.num_classes, pad=self.pad, flip=self.flip)
        return copies[key]

    @cached_property
    def channel_stats(self):
        """Per-channel mean and std of the training images, in [0, 255] units."""
        channels = self.train_x.transpose(0, 1).flatten(1)
        stats = [(c.double().mean().item(), c.double().std().item()) for c in channels]  # floats on any device
        return tuple(torch.tensor(v, dtype=torch.float32) for v in zip(*stats))

    def subset(self, train=None, test=None):
        """The first `train` / `test` images (for quick checks)."""
        return ImageData(
            self.name, self.train_x[:train], self.train_y[:train], self.test_x[:test],
            self.test_y[:test], self.num_classes, self.pad, self.flip,
        )
