"""Linear CKA (Kornblith et al. 2019) between two networks' representations of the same images."""

import torch
import torch.nn as nn


def linear_cka(x, y):
    """CKA of (n, p) and (n, q) feature matrices: 1 for the same representation up to rotation and
    scale, near 0 for unrelated ones."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = (y.T @ x).norm() ** 2
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()))


@torch.no_grad()
def penultimate_features(model, batches):
    """The inputs of the network's last linear layer (its final representation), for all batches."""
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    features = []
    hook = head.register_forward_pre_hook(lambda module, args: features.append(args[0].flatten(1).float().cpu()))
    was_training = model.training
    model.eval()
    try:
        for inputs, _ in batches:
            model(inputs)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(features)


def representation_cka(a, b, batches):
    batches = list(batches)
    return linear_cka(penultimate_features(a, batches), penultimate_features(b, batches))
