"""A user's own residual network, written as a researcher would: a block class layerlth does not
know, declared with `layerlth.register_block`, in a module the sweep names as `user_model:build`."""

import torch
import torch.nn as nn

import layerlth


class Mix(nn.Module):
    """y = relu(x + f(x)): a residual block of the user's own making."""

    def __init__(self, width):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                               nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))

    def forward(self, x):
        return torch.relu(x + self.f(x))


layerlth.register_block(Mix)


def build(num_classes, image_size, in_channels=3):
    assert image_size >= 4, image_size
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, 1, 1), nn.ReLU(), nn.Sequential(*(Mix(8) for _ in range(4))),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def plain(num_classes, image_size):
    """A network without any residual block."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, num_classes))


def not_a_module(num_classes, image_size):
    return "a string"
