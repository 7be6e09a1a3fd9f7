"""GraSP (Wang et al. 2020): theta * Hg, with H the Hessian and g the gradient of the loss.

Removing theta changes the gradient norm g^T g by about -2 theta^T H g, so a block with a large
theta * Hg carries gradient flow and is kept; one with a low (or negative) score goes first.
The loss divides logits by a temperature (200, as in the GraSP code) to keep the softmax from
saturating at initialisation.
"""

import torch
import torch.nn.functional as F

from layerlth.criteria.weights import prunable_weights


def _loss(model, inputs, labels, temperature):
    return F.cross_entropy(model(inputs) / temperature, labels)


def grasp(model, batches, temperature=200.0):
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
