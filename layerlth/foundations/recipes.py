"""Training recipes as named presets: the paper's (from the authors' related code) and He et al.'s."""

from dataclasses import dataclass, replace

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

    def scaled(self, epochs=None, batch_size=None, lr=None):
        """The same recipe with some values overridden; milestones stay at the same fractions. A
        recipe whose lr scales takes lr x batch_size / its own batch size unless lr is given."""
        if lr is None and batch_size is not None and self.lr_scales:
            lr = self.lr * batch_size / self.batch_size
        changes = {"epochs": epochs, "batch_size": batch_size, "lr": lr}
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def milestone_epochs(self):
        return [round(f * self.epochs) for f in self.milestones]

    def optimizer(self, model):
        return torch.optim.SGD(
            model.parameters(), lr=self.lr, momentum=self.momentum,
            nesterov=self.nesterov, weight_decay=self.weight_decay,
        )

    def lr_at(self, epoch):
        """Step schedule as a pure function of the epoch, so training can start at any epoch
        (learning-rate rewinding replays it from there)."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestone_epochs())


RECIPES = {
    # lr 0.01, /10 at epoch 100 and /100 at 150 of 200, Nesterov momentum
    "paper": Recipe(epochs=200, lr=0.01, milestones=(0.5, 0.75), nesterov=True),
    # He et al. 2016: lr 0.1, /10 at 50% and 75% of 164 epochs
    "he2016": Recipe(epochs=164, lr=0.1, milestones=(0.5, 0.75)),
    # torchvision's classic ResNet-50 ImageNet recipe: 90 epochs, SGD momentum 0.9, lr 0.1 x batch/256,
    # weight decay 1e-4, lr / 10 at epochs 30, 60 and 80 (76.1% top-1 reported for ResNet-50)
    "imagenet": Recipe(epochs=90, lr=0.1, milestones=(30 / 90, 60 / 90, 80 / 90), batch_size=256, lr_scales=True),
}


def get_recipe(name):
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; allowed: {sorted(RECIPES)}")
    return RECIPES[name]


def training_recipe(config):
    """The recipe a trial config trains with: its preset, with the config's overrides."""
    return get_recipe(config.recipe).scaled(config.epochs, config.batch_size, config.lr)
