"""GraSP (Wang et al. 2020): theta * Hg, with H the Hessian and g the gradient of the loss.

Removing theta changes the gradient norm g^T g by about -2 theta^T H g, so a block with a large
theta * Hg carries gradient flow and is kept; one with a low (or negative) score goes first.
The loss divides logits by a temperature (200, as in the GraSP code) to keep the softmax from
saturating at initialisation. Hg needs a second derivative through every op, which torch lacks for
hardsigmoid/hardswish (MobileNetV3): in the criterion's own copy of the net they are swapped for
their exact relu6 forms, which have one; nor for the fused attention kernels, so attention runs as
plain matmuls (the math kernel) while scoring.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from layerlth.criteria.weights import prunable_weights
from layerlth.models.surgery import replace_module


class _HardSigmoid(nn.Module):
    def forward(self, x):
        return F.relu6(x + 3) / 6


class _HardSwish(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3) / 6


_TWICE_DIFFERENTIABLE = {nn.Hardsigmoid: _HardSigmoid, nn.Hardswish: _HardSwish}


def _twice_differentiable(model):
    """Swap, in place, the activations without a second derivative for equal ones that have it."""
    for name, module in list(model.named_modules()):
        swap = _TWICE_DIFFERENTIABLE.get(type(module))
        if swap:
            replace_module(model, name, swap())
    return model


def _loss(model, inputs, labels, temperature):
    return F.cross_entropy(model(inputs) / temperature, labels)


def grasp(model, batches, temperature=200.0):
    with sdpa_kernel(SDPBackend.MATH):
        return _grasp(_twice_differentiable(model), batches, temperature)  # the criterion's own copy


def _grasp(model, batches, temperature):
    weights = prunable_weights(model)
    params = list(weights.values())
    batches = list(batches)
    g = [torch.zeros_like(p) for p in params]
    for inputs, labels in batches:
        grads = torch.autograd.grad(_loss(model, inputs, labels, temperature), params)
        g = [a + b for a, b in zip(g, grads)]
    model.zero_grad()
    for inputs, labels in batches:
        grads = torch.autograd.grad(_loss(model, inputs, labels, temperature), params, create_graph=True)
        # d/dtheta (g . grad) = H g, accumulated into .grad
        sum((gi * hi).sum() for gi, hi in zip(g, grads)).backward()
    return {name: (w * w.grad).detach() for name, w in weights.items()}
