"""The CIFAR ResNets of He et al. 2016 (Sec. 4.2): three stages of 16/32/64 channels, 6n+2 layers.

Stages are `nn.Sequential`s whose children are named `block1..blockN`, so every block has a
stable name (`stage2.block3`) that survives the removal of its neighbours.
"""

from collections import OrderedDict

import torch.nn as nn
import torch.nn.functional as F

WIDTHS = (16, 32, 64)
SHORTCUTS = {
    "A": "parameter-free: subsample and zero-pad channels (He et al. option A)",
    "B": "1x1 convolution + BN projection where the shape changes (He et al. option B)",
}


class PadShortcut(nn.Module):
    """Option A: stride-2 subsampling plus zero channels; no parameters, no MACs."""

    def __init__(self, stride, extra_channels):
        super().__init__()
        self.stride, self.extra = stride, extra_channels

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    """y = relu(f(x) + shortcut(x)), f = conv-bn-relu-conv-bn."""

    def __init__(self, in_channels, out_channels, stride=1, shortcut="B"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.shortcut = PadShortcut(stride, out_channels - in_channels)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )

    @property
    def preserves_shape(self):
        return isinstance(self.shortcut, nn.Identity)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """`blocks_per_stage=(n, n, n)` gives resnet{6n+2}; unequal counts give a hand-built ticket."""

    def __init__(self, blocks_per_stage, num_classes=10, in_channels=3, shortcut="B"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; allowed: {sorted(SHORTCUTS)}")
        self.conv1 = nn.Conv2d(in_channels, WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        width = WIDTHS[0]
        for index, (count, out) in enumerate(zip(blocks_per_stage, WIDTHS), start=1):
            stride = 1 if index == 1 else 2
            blocks = OrderedDict()
            for b in range(1, count + 1):
                blocks[f"block{b}"] = BasicBlock(width, out, stride if b == 1 else 1, shortcut)
                width = out
            setattr(self, f"stage{index}", nn.Sequential(blocks))
        self.fc = nn.Linear(width, num_classes)
        self._init_weights()

    def _init_weights(self):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def cifar_resnet(depth, num_classes=10, in_channels=3, shortcut="B"):
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 56, ...), got {depth}")
    n = (depth - 2) // 6
    return CifarResNet((n, n, n), num_classes, in_channels, shortcut)
