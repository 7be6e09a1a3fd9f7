"""Adversarial accuracy under L-inf FGSM and PGD (torchattacks), in [0, 1] pixel units.

The networks take mean/std-normalised inputs; the attacks see the network behind its normalisation,
so eps = 8/255 means 8 grey levels of the original image whatever the dataset's statistics.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn


class PixelInput(nn.Module):
    """`model` taking images in [0, 1]: the same normalisation as `layerlth.data.Batches`."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.model = model
        # Batches normalises uint8 values: (x - mean) / std with mean, std in [0, 255] units.
        # Not named `mean`/`std`: torchattacks 3.4 reads model.mean/model.std by those names, takes
        # the model to want normalised inputs and normalises again (3.5 does so for its RobModel).
        self.register_buffer("pixel_mean", mean.float().reshape(1, -1, 1, 1) / 255)
        self.register_buffer("pixel_std", std.float().reshape(1, -1, 1, 1) / 255)

    def forward(self, x):
        return self.model((x - self.pixel_mean) / self.pixel_std)


@dataclass(frozen=True)
class AttackSettings:
    eps: float = 8 / 255
    steps: int = 10
    step_size: float = 2 / 255
    random_start: bool = True
    images: int = 1000

    def __post_init__(self):
        if not 0 <= self.eps <= 1 or not 0 < self.step_size <= 1:
            raise ValueError(f"attack eps must be in [0, 1] and the PGD step size in (0, 1] (pixel units), "
                             f"got eps={self.eps}, step size={self.step_size}")
        if self.steps < 1 or self.images < 1:
            raise ValueError(f"PGD steps and attacked images must be >= 1, got {self.steps} and {self.images}")

    def row(self):
        return {"attack_eps": self.eps, "pgd_steps": self.steps, "pgd_step_size": self.step_size,
                "pgd_random_start": self.random_start, "attack_images": self.images}


def make_attack(name, model, settings):
    import torchattacks

    if name == "fgsm":
        return torchattacks.FGSM(model, eps=settings.eps)
    if name == "pgd":
        return torchattacks.PGD(model, eps=settings.eps, alpha=settings.step_size, steps=settings.steps,
                                random_start=settings.random_start)
    raise ValueError(f"unknown attack {name!r}; allowed: fgsm, pgd")


def adversarial_accuracy(model, data, names, settings, seed=0, batch_size=256):
    """{"clean": accuracy, name: accuracy under that attack} on the first `settings.images` test
    images of `data` (on the model's device), the model in eval mode and full precision."""
    was_training = model.training
    # eval mode throughout: torchattacks puts a model it found training back into train mode
    net = PixelInput(model, *data.channel_stats).to(data.test_x.device).eval()
    attacks = {name: make_attack(name, net, settings) for name in names}
    x, y = data.test_x[: settings.images], data.test_y[: settings.images]
    correct = dict.fromkeys(["clean", *names], 0)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # PGD's random start draws from torch's generator
        torch.manual_seed(seed)
        for start in range(0, len(x), batch_size):
            images, labels = x[start : start + batch_size].float() / 255, y[start : start + batch_size]
            with torch.no_grad():
                correct["clean"] += int((net(images).argmax(1) == labels).sum())
            for name, attack in attacks.items():
                adversarial = attack(images, labels)
                with torch.no_grad():
                    correct[name] += int((net(adversarial).argmax(1) == labels).sum())
    model.train(was_training)
    return {name: count / len(x) for name, count in correct.items()}


def settings_from(config):
    return AttackSettings(config.attack_eps, config.pgd_steps, config.pgd_step_size, config.pgd_random_start,
                          config.attack_images)

