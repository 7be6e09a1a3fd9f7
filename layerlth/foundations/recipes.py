"""Training recipes as named presets: the paper's (from the authors' related code), He et al.'s,
torchvision's classic ImageNet one and a fast ImageNet one (FFCV's ResNet-50 configs)."""

from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class Recipe:
    epochs: int
    lr: float
    milestones: tuple  # fractions of the epochs at which the lr is multiplied by `gamma`
    gamma: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    batch_size: int = 128
    lr_scales: bool = False  # the lr follows the batch size (lr x batch / the recipe's batch: Goyal et al.)
    # "step": x gamma at each milestone, constant within an epoch; "cyclic": linear from lr/1e4 at epoch
    # 0 to lr at `peak_epochs`, then linearly to 0 at the last epoch, changed at every step
    schedule: str = "step"
    peak_epochs: float = 2
    label_smoothing: float = 0.0  # of the training loss (the test loss is plain cross-entropy)
    norm_weight_decay: bool = True  # False: normalisation layers' weights and biases are not decayed
    # progressive resizing (streamed datasets): training crops of (smallest, largest) px, the smallest
    # until `resize_ramp[0]` of the epochs, the largest from `resize_ramp[1]`, linear between in steps
    # of 32 px; evaluation at the trial's image_size. None: every epoch at image_size.
    train_sizes: tuple | None = None
    resize_ramp: tuple = (0.0, 0.0)

    def scaled(self, epochs=None, batch_size=None, lr=None):
        """The same recipe with some values overridden; milestones stay at the same fractions. A
        recipe whose lr scales takes lr x batch_size / its own batch size unless lr is given."""
        if lr is None and batch_size is not None and self.lr_scales:
            lr = self.lr * batch_size / self.batch_size
        changes = {"epochs": epochs, "batch_size": batch_size, "lr": lr}
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def milestone_epochs(self):
        return [round(f * self.epochs) for f in self.milestones]

    @property
    def per_step(self):
        """Whether the lr changes within an epoch (the loop sets it before every step)."""
        return self.schedule == "cyclic"

    def optimizer(self, model):
        params = list(model.parameters())
        if not self.norm_weight_decay:
            params = _norm_groups(model)
        return torch.optim.SGD(
            params, lr=self.lr, momentum=self.momentum,
            nesterov=self.nesterov, weight_decay=self.weight_decay,
        )

    def lr_at(self, epoch):
        """The schedule as a pure function of the (fractional) epoch, so training can start at any
        epoch (learning-rate rewinding replays it from there)."""
        if self.schedule == "cyclic":
            peak = min(self.peak_epochs, self.epochs)
            return float(np.interp(epoch, [0, peak, self.epochs], [1e-4 * self.lr, self.lr, 0.0]))
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestone_epochs())

    def train_size(self, epoch, image_size):
        """The training crop size in `epoch` (progressive resizing), else `image_size`."""
        if self.train_sizes is None:
            return image_size
        smallest, largest = self.train_sizes
        start, end = (f * self.epochs for f in self.resize_ramp)
        if epoch <= start:
            return smallest
        if epoch >= end:
            return largest
        size = np.interp(epoch, [start, end], [smallest, largest])
        return int(np.round(size / 32)) * 32


def _norm_groups(model):
    """SGD parameter groups: normalisation layers' parameters without weight decay, the rest with it."""
    norm_types = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    norm = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
    params = list(model.parameters())
    return [{"params": [p for p in params if id(p) in norm], "weight_decay": 0.0},
            {"params": [p for p in params if id(p) not in norm]}]


RECIPES = {
    # lr 0.01, /10 at epoch 100 and /100 at 150 of 200, Nesterov momentum
    "paper": Recipe(epochs=200, lr=0.01, milestones=(0.5, 0.75), nesterov=True),
    # He et al. 2016: lr 0.1, /10 at 50% and 75% of 164 epochs
    "he2016": Recipe(epochs=164, lr=0.1, milestones=(0.5, 0.75)),
    # torchvision's classic ResNet-50 ImageNet recipe: 90 epochs, SGD momentum 0.9, lr 0.1 x batch/256,
    # weight decay 1e-4, lr / 10 at epochs 30, 60 and 80 (76.1% top-1 reported for ResNet-50)
    "imagenet": Recipe(epochs=90, lr=0.1, milestones=(30 / 90, 60 / 90, 80 / 90), batch_size=256, lr_scales=True),
    # FFCV's ResNet-50 ImageNet config for 16 epochs (libffcv/ffcv-imagenet, rn50_16_epochs.yaml; 73.8% top-1
    # reported on 8 A100s in 14.9 min): global batch 4096 (512 per GPU), lr 1.7 (scaled with the batch),
    # cyclic schedule peaking at epoch 2, label smoothing 0.1, weight decay 1e-4 but not on BatchNorm,
    # training crops 160 px to epoch 11 and 192 px from 13, evaluation at 256 px (set image_size: 256).
    # FFCV also uses BlurPool and flip test-time augmentation, which layerlth does not (docs/imagenet.md).
    "imagenet_fast": Recipe(epochs=16, lr=1.7, milestones=(), batch_size=4096, lr_scales=True, schedule="cyclic",
                            label_smoothing=0.1, norm_weight_decay=False, train_sizes=(160, 192),
                            resize_ramp=(11 / 16, 13 / 16)),
}


def get_recipe(name):
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; allowed: {sorted(RECIPES)}")
    return RECIPES[name]


def training_recipe(config):
    """The recipe a trial config trains with: its preset, with the config's overrides."""
    return get_recipe(config.recipe).scaled(config.epochs, config.batch_size, config.lr)
