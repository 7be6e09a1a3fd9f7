"""Model size and cost: parameters, multiply-accumulates, and the memory a training step needs."""

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_params(model):
    """Number of parameters (elements of `model.parameters()`), trainable or not; buffers such as
    BatchNorm's running statistics are not counted."""
    return sum(p.numel() for p in model.parameters())


@contextmanager
def _countable_attention():
    """Attention as ops the FLOP counter sees: nn.MultiheadAttention's fused inference path
    (projections and all) and the fused attention kernels are invisible to it, so both are
    switched to their plain matmul forms while counting."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def count_macs(model, input_size=(3, 32, 32)):
    """Multiply-accumulates of one image through convolutions, linear layers and attention (the
    paper's FLOPs; for a ViT block 4ND^2 projections + 2N^2D attention + 2NDM MLP).

    Counted by torch's own FLOP counter, which counts matmul/conv ops only (2 FLOPs per MAC).
    """
    param = next(model.parameters())
    x = torch.zeros(1, *input_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    with torch.no_grad(), _countable_attention(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2


def training_step_bytes(model, inputs, labels):
    """Bytes one SGD-with-momentum step holds: weights, gradients, momentum, and the tensors
    autograd saves for the backward pass (counted once per storage), on any device.

    This is an estimate of a step's footprint from first principles, comparable across devices
    (allocator overhead and workspace are left out); on a GPU the trial also reports the peak.
    """
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.zero_grad(set_to_none=True)
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = F.cross_entropy(model(inputs), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():  # the pass leaves no trace: BN statistics as they were (a resumed net's too)
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return 3 * weights + sum(saved.values())
