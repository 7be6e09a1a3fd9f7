"""SynFlow (Tanaka et al. 2020): data-free synaptic saliency theta * dR/dtheta.

R is the sum of the outputs of the network with absolute weights on an all-ones input. Two ResNet
traps are avoided: BN runs in eval mode (in train mode a constant input normalises to zero and every
score vanishes), and the pass runs in float64 (products of |weights| over deep nets overflow float32).
One scoring pass of the net as given; removing blocks in rounds that re-score the shallower net
(SynFlow's iterative idea, for blocks) is the trial option `rounds` (`layerlth.tickets.rounds`).
"""

import copy

import torch

from layerlth.criteria.weights import prunable_weights


def synflow(model, batches=(), input_size=None):
    """Needs no data, only the input shape: `input_size`, or that of the first batch."""
    if input_size is None:
        first = next(iter(batches), None)
        if first is None:
            raise ValueError("synflow needs input_size=(C, H, W) or one batch to read it from")
        input_size = first[0].shape[1:]
    device = next(model.parameters()).device
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    weights = prunable_weights(net)
    net.zero_grad()
    net(torch.ones(1, *input_size, dtype=torch.float64, device=device)).sum().backward()
    return {name: (w * w.grad).detach() for name, w in weights.items()}
