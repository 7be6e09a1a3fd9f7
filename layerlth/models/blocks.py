"""Which modules are residual blocks, which stage each belongs to, and which may be removed.

Blocks are found, not listed: any module whose class (or a base of it) is registered here — the
residual blocks of torchvision's families, the CIFAR ResNet's, and those a user declares with
`register_block` — is a block, wherever it sits in the model; a block inside a block is part of it.

A block y = f(x) + x can be removed (leaving y = x) only if it keeps the tensor's shape; blocks
whose shortcut changes resolution or width cannot. On top of that physical rule, `RemovalRule`
states the paper's policy: keep the network's first block and a minimum number of blocks per stage.
A stage is a run of consecutive blocks in one container that starts at a shape-changing block.
"""

from dataclasses import dataclass

import torch.nn as nn

from layerlth.foundations._torchvision import torchvision
from layerlth.models.cifar_resnet import BasicBlock as CifarBasicBlock

_TV = torchvision.models
CONTAINERS = (nn.Sequential, nn.ModuleList)  # containers a network runs in order, by position


@dataclass(frozen=True)
class BlockKind:
    """How layerlth recognises a residual block class: does an instance keep its input's shape
    (so that removing it leaves y = x), and does it compute on (N, C, H, W) maps ("conv") or on
    tokens ("tokens", where the map-based criteria HRank, expectABS and PLS have no definition)."""

    preserves_shape: object = None  # block -> bool; None: always
    layout: str = "conv"

    def keeps_shape(self, block):
        return True if self.preserves_shape is None else bool(self.preserves_shape(block))


LAYOUTS = ("conv", "tokens")
_REGISTRY = {
    CifarBasicBlock: BlockKind(lambda block: block.preserves_shape),
    _TV.resnet.BasicBlock: BlockKind(lambda block: block.downsample is None),
    _TV.resnet.Bottleneck: BlockKind(lambda block: block.downsample is None),
    _TV.mobilenetv2.InvertedResidual: BlockKind(lambda block: block.use_res_connect),
    _TV.mobilenetv3.InvertedResidual: BlockKind(lambda block: block.use_res_connect),
    _TV.efficientnet.MBConv: BlockKind(lambda block: block.use_res_connect),
    _TV.efficientnet.FusedMBConv: BlockKind(lambda block: block.use_res_connect),
    _TV.regnet.ResBottleneckBlock: BlockKind(lambda block: block.proj is None),
    _TV.convnext.CNBlock: BlockKind(),
    _TV.swin_transformer.SwinTransformerBlock: BlockKind(layout="tokens"),  # and its V2 subclass
    _TV.vision_transformer.EncoderBlock: BlockKind(layout="tokens"),
}


def register_block(cls, preserves_shape=None, layout="conv"):
    """Declare a residual block class of your own: instances compute y = x + f(x) (or a chain of
    such sums) and sit in an nn.Sequential/nn.ModuleList that the network runs in order.
    `preserves_shape(block) -> bool` says which instances keep their input's shape (default: all);
    `layout` is "conv" for (N, C, H, W) maps, "tokens" otherwise. Subclasses are recognised too."""
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise TypeError(f"register_block needs an nn.Module subclass, got {cls!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {list(LAYOUTS)}")
    if preserves_shape is not None and not callable(preserves_shape):
        raise TypeError(f"preserves_shape must be callable (block -> bool), got {preserves_shape!r}")
    _REGISTRY[cls] = BlockKind(preserves_shape, layout)
    return cls


def block_kind(module):
    """The registered kind of `module`'s class (or of its nearest registered base), else None."""
    return next((_REGISTRY[k] for k in type(module).__mro__ if k in _REGISTRY), None)


@dataclass(frozen=True)
class RemovalRule:
    """Which physically removable blocks a ticket may drop: the policy on top of what surgery can do.

    `keep_first`: the network's first block is never removed. `min_per_stage`: each stage keeps at
    least this many blocks, counting its shape-changing first block (at least 1). The default,
    `RemovalRule()`, is the policy of the authors' related code: ResNet32 may then lose up to 9
    blocks, ResNet56 21. The trial options `keep_first` and `min_per_stage` set it.
    """

    keep_first: bool = True  # never remove the network's first block (the authors' code)
    min_per_stage: int = 2  # blocks each stage keeps, counting its shape-changing first block

    def __post_init__(self):
        if self.min_per_stage < 1:
            raise ValueError(f"min_per_stage must be >= 1, got {self.min_per_stage}")


# What surgery can do at all, before the paper's policy: every shape-preserving block.
PHYSICAL_ONLY = RemovalRule(keep_first=False, min_per_stage=1)


@dataclass(frozen=True)
class BlockInfo:
    name: str  # module path: model.get_submodule(name) is the block
    stage: int  # 1-based
    removable: bool
    reason: str  # why not removable; empty when it is


def is_block(module):
    return block_kind(module) is not None


def preserves_shape(block):
    return block_kind(block).keeps_shape(block)


def _stages(model):
    """[[block name, ...], ...] in forward order; a block inside another block is part of it."""
    stages, parent_of_last, found = [], None, []
    for name, module in model.named_modules():
        if not is_block(module) or any(name.startswith(outer + ".") for outer in found):
            continue
        found.append(name)
        parent = name.rpartition(".")[0]
        if not stages or parent != parent_of_last or not preserves_shape(module):
            stages.append([])
        stages[-1].append(name)
        parent_of_last = parent
    return stages


def _physical_reason(model, name, block):
    """Why surgery cannot remove this block at all (empty when it can)."""
    if not preserves_shape(block):
        return "changes resolution or width (strided or projection shortcut)"
    parent = model.get_submodule(name.rpartition(".")[0])
    if not isinstance(parent, CONTAINERS):
        return f"its parent is a {type(parent).__name__}, not a Sequential/ModuleList run in order"
    return ""


def describe_blocks(model, rule=RemovalRule()):
    """Every residual block, its stage, and whether (or why not) it is removable under `rule`."""
    infos = []
    for stage, names in enumerate(_stages(model), start=1):
        for name in names:
            reason = _physical_reason(model, name, model.get_submodule(name))
            if not reason and rule.keep_first and not infos:
                reason = "first block of the network (keep_first)"
            elif not reason and len(names) <= rule.min_per_stage:
                reason = f"stage {stage} has {len(names)} blocks and keeps at least {rule.min_per_stage}"
            infos.append(BlockInfo(name, stage, not reason, reason))
    if not infos:
        raise ValueError(f"{type(model).__name__} has no residual blocks layerlth knows; declare your block "
                         f"class with layerlth.register_block(cls) (see its help)")
    return infos


def removable_blocks(model, rule=RemovalRule()):
    """Names (module paths) of the residual blocks `rule` lets a ticket remove, in forward order.

    A block is listed when it keeps its input's shape, sits in an `nn.Sequential`/`nn.ModuleList`
    the network runs in order, and `rule` does not keep it: with `keep_first` the network's first
    block stays, and a stage with no more blocks than `min_per_stage` keeps them all. Each listed
    block is a candidate, not all at once: a ticket removes at most its stage's blocks beyond
    `min_per_stage`. `describe_blocks` says why each other block is kept.
    """
    return [info.name for info in describe_blocks(model, rule) if info.removable]


def stage_budgets(model, rule=RemovalRule()):
    """{stage: how many of its blocks may be removed at most}."""
    infos = describe_blocks(model, rule)
    budgets = {}
    for stage in {info.stage for info in infos}:
        members = [info for info in infos if info.stage == stage]
        removable = sum(info.removable for info in members)
        budgets[stage] = min(removable, max(0, len(members) - rule.min_per_stage))
    return budgets


def max_removable(model, rule=RemovalRule()):
    return sum(stage_budgets(model, rule).values())


def select_lowest(model, scores, p, rule=RemovalRule()):
    """The p lowest-scoring blocks, skipping a block once its stage has reached its minimum.

    Ties break by forward order, so the choice is deterministic.
    """
    limit = max_removable(model, rule)
    if not 0 <= p <= limit:
        raise ValueError(f"cannot remove p={p} blocks: this model allows 0..{limit} under {rule}")
    infos = {info.name: info for info in describe_blocks(model, rule) if info.removable}
    unknown = sorted(set(scores) - set(infos))
    if unknown:
        raise ValueError(f"scores name blocks that are not removable: {unknown}")
    order = list(infos)
    budgets = stage_budgets(model, rule)
    chosen = []
    for name in sorted(scores, key=lambda n: (scores[n], order.index(n))):
        stage = infos[name].stage
        if len(chosen) < p and budgets[stage] > 0:
            budgets[stage] -= 1
            chosen.append(name)
    if len(chosen) < p:
        raise ValueError(f"only {len(chosen)} of the scored blocks can be removed, p={p} asked")
    return chosen
