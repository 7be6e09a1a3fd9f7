"""SNIP (Lee et al. 2019): connection sensitivity |theta * dL/dtheta| on real batches."""

import torch.nn.functional as F

from layerlth.criteria.weights import prunable_weights


def snip(model, batches):
    weights = prunable_weights(model)
    model.zero_grad()
    for count, (inputs, labels) in enumerate(batches, start=1):
        F.cross_entropy(model(inputs), labels).backward()
    return {name: (w.grad / count * w).abs().detach() for name, w in weights.items()}
