"""k CIFAR ResNets of one architecture computed as one network (horizontal fusion, as HFTA does).

Activations are (N, k x C, H, W): member i owns channels i x C .. (i + 1) x C - 1. Every
convolution is one grouped convolution (groups = k) over the members' stacked weights, stored flat
as (k x O, I, kh, kw); every BatchNorm is one batch norm over k x C channels (its statistics are
per channel, so per member); the classifier is one batched matmul. A member's computation touches
only its own channels, so each member computes what it computes alone.

Block slots are the union of the members' blocks (their names survive surgery: `stage2.block3`).
A member without a slot's block (a layer ticket) has a ghost there: the slot passes that member's
channels through unchanged (`torch.where` on its channels), so dense nets and tickets of one
architecture share one network. A ghost's weights are zeros, never read back into the member and
never counted in its MACs or parameters.
"""

import re

import torch
import torch.nn.functional as F

from layerlth.models.cifar_resnet import WIDTHS, BasicBlock, CifarResNet, PadShortcut

_BLOCK = re.compile(r"stage(\d)\.block(\d+)$")


def fusable(model):
    """Whether `model` can join a fused net: a CIFAR ResNet of basic blocks at their full widths
    (layer tickets included; a filter ticket's narrower convolutions are not)."""
    if type(model) is not CifarResNet or model.conv1.out_channels != WIDTHS[0]:
        return False
    return all(isinstance(b, BasicBlock) and b.conv1.out_channels == b.conv2.out_channels == WIDTHS[int(name[5]) - 1]
               for name, b in blocks_of(model))


def blocks_of(model):
    """[(name, block)] of a CIFAR ResNet, stage by stage in order."""
    return [(f"stage{s}.{name}", block) for s in (1, 2, 3) for name, block in getattr(model, f"stage{s}").named_children()]


def _slot_order(name):
    stage, block = _BLOCK.match(name).groups()
    return int(stage), int(block)


class FusedNet:
    """The members' parameters and buffers stacked (`params`, `buffers`: name -> tensor), and the
    fused forward. `names[i]` maps a stacked name to member i's own parameter name, or None where
    member i has a ghost."""

    def __init__(self, models, memory_format=torch.contiguous_format):
        self.k, self.memory_format = len(models), memory_format
        first = models[0]
        self.slots = sorted({name for m in models for name, _ in blocks_of(m)}, key=_slot_order)
        self.present = {slot: [slot in dict(blocks_of(m)) for m in models] for slot in self.slots}
        self.ghosts = [sum(not self.present[s][i] for s in self.slots) for i in range(self.k)]
        self.pad_shortcut = {slot: self._shortcut(models, slot) for slot in self.slots}
        template = {slot: next(dict(blocks_of(m))[slot] for m in models if slot in dict(blocks_of(m)))
                    for slot in self.slots}
        self.convs, self.norms = {}, []  # conv name -> (stride, padding, out channels); BN names
        self._collect(first, template)
        self.params, self.buffers, self.member_names = {}, {}, {}
        self._stack(models)
        device = next(first.parameters()).device
        self.masks = {slot: self._mask(slot, device) for slot in self.slots if not all(self.present[slot])}

    # ---------------------------------------------------------------- building
    def _shortcut(self, models, slot):
        for m in models:
            block = dict(blocks_of(m)).get(slot)
            if block is not None:
                return block.shortcut if isinstance(block.shortcut, PadShortcut) else None
        return None

    def _collect(self, first, template):
        """The layers' names in the canonical (slot) naming, with each conv's geometry."""
        layers = [("conv1", first.conv1, first.bn1)]
        for slot in self.slots:
            block = template[slot]
            layers += [(f"{slot}.conv1", block.conv1, block.bn1), (f"{slot}.conv2", block.conv2, block.bn2)]
            if isinstance(block.shortcut, torch.nn.Sequential):
                layers.append((f"{slot}.shortcut.0", block.shortcut[0], block.shortcut[1]))
        for name, conv, bn in layers:
            self.convs[name] = (conv.stride, conv.padding, conv.out_channels)
            self.norms.append(self._bn_name(name))
        self.bn_eps, self.bn_momentum = first.bn1.eps, first.bn1.momentum

    @staticmethod
    def _bn_name(conv):
        if conv.endswith("shortcut.0"):
            return conv[:-1] + "1"
        return conv.replace("conv", "bn")

    def _stack(self, models):
        """Stacked leaves: conv weights flat (k x O, I, kh, kw), BN vectors flat (k x C), the
        classifier (k, classes, C) and (k, classes)."""
        states = [m.state_dict(keep_vars=True) for m in models]
        leaves = [f"{c}.weight" for c in self.convs] + [f"{b}.{leaf}" for b in self.norms for leaf in ("weight", "bias")]
        for name in [*leaves, "fc.weight", "fc.bias"]:
            self.params[name] = self._stacked(states, name).requires_grad_()
        for name in (f"{b}.{leaf}" for b in self.norms for leaf in ("running_mean", "running_var", "num_batches_tracked")):
            self.buffers[name] = self._stacked(states, name)

    def _stacked(self, states, name):
        """One leaf of every member stacked; a ghost's is zeros (a BN scale and variance: ones)."""
        owners = [name if name in state else None for state in states]  # block names survive surgery
        like = next(state[name] for state, own in zip(states, owners) if own)
        ones = name.endswith("running_var") or (name.endswith(".weight") and name[:-7] in self.norms)
        ghost = (torch.ones_like if ones else torch.zeros_like)(like).detach()
        stacked = torch.stack([state[name].detach() if own else ghost for state, own in zip(states, owners)])
        if stacked.dim() > 1 and not name.startswith("fc."):
            stacked = stacked.flatten(0, 1)  # (k x O, ...) and (k x C)
        if stacked.dim() == 4:
            stacked = stacked.contiguous(memory_format=self.memory_format)
        self.member_names[name] = owners
        return stacked.clone()

    def _mask(self, slot, device):
        """(1, k x C, 1, 1) bool: the channels of the members that hold this slot's block."""
        channels = self.convs[f"{slot}.conv2"][2]
        present = torch.tensor(self.present[slot], device=device)
        return present.repeat_interleave(channels).view(1, -1, 1, 1)

    # ---------------------------------------------------------------- state in and out
    def member_state(self, i):
        """Member i's own parameters and buffers by its own names (ghosts left out), as views."""
        out = {}
        for name, stacked in (*self.params.items(), *self.buffers.items()):
            own = self.member_names[name][i]
            if own is not None:
                out[own] = self.member_view(name, stacked, i)
        return out

    def member_view(self, name, stacked, i):
        if name.startswith("fc.") or name.endswith("num_batches_tracked"):
            return stacked[i]
        size = stacked.shape[0] // self.k
        return stacked[i * size:(i + 1) * size]

    # ---------------------------------------------------------------- forward
    def conv(self, x, name):
        stride, padding, _ = self.convs[name]
        return F.conv2d(x, self.params[f"{name}.weight"], None, stride, padding, 1, self.k)

    def bn(self, x, name, training):
        return F.batch_norm(x, self.buffers[f"{name}.running_mean"], self.buffers[f"{name}.running_var"],
                            self.params[f"{name}.weight"], self.params[f"{name}.bias"], training,
                            self.bn_momentum, self.bn_eps)

    def forward(self, x, training=True):
        """x: (N, k x C_in, H, W) -> logits (k, N, classes)."""
        x = F.relu(self.bn(self.conv(x, "conv1"), "bn1", training))
        for slot in self.slots:
            out = F.relu(self.bn(self.conv(x, f"{slot}.conv1"), f"{slot}.bn1", training))
            out = self.bn(self.conv(out, f"{slot}.conv2"), f"{slot}.bn2", training)
            out = F.relu(out + self._shortcut_of(x, slot, training))
            x = torch.where(self.masks[slot], out, x) if slot in self.masks else out
        n = x.shape[0]
        x = F.adaptive_avg_pool2d(x, 1).view(n, self.k, -1).transpose(0, 1)  # (k, N, C)
        return torch.baddbmm(self.params["fc.bias"][:, None, :], x, self.params["fc.weight"].transpose(1, 2))

    def _shortcut_of(self, x, slot, training):
        if f"{slot}.shortcut.0" in self.convs:
            return self.bn(self.conv(x, f"{slot}.shortcut.0"), f"{slot}.shortcut.1", training)
        pad = self.pad_shortcut[slot]
        if pad is None:
            return x
        n, kc, h, w = x.shape
        per = x.view(n, self.k, kc // self.k, h, w)[:, :, :, ::pad.stride, ::pad.stride]
        per = F.pad(per, (0, 0, 0, 0, pad.extra // 2, pad.extra - pad.extra // 2))
        return per.reshape(n, -1, *per.shape[-2:])

    def count_tracked(self):
        """BatchNorm modules count their training steps: each member's counters go up by one."""
        for name, counter in self.buffers.items():
            if name.endswith("num_batches_tracked"):
                counter.add_(1)
