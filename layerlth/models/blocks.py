"""Which modules are residual blocks, which stage each belongs to, and which may be removed.

A block y = f(x) + x can be removed (leaving y = x) only if it keeps the tensor's shape; blocks
whose shortcut changes resolution or width cannot. On top of that physical rule, `RemovalRule`
states the paper's policy: keep the network's first block and a minimum number of blocks per stage.
A stage is a run of consecutive blocks in one container that starts at a shape-changing block.
"""

from dataclasses import dataclass


from layerlth._torchvision import torchvision
from layerlth.models.cifar_resnet import BasicBlock as CifarBasicBlock

_TV = torchvision.models
# class -> does this block keep its input's shape (so that removing it leaves y = x)?
_SHAPE_PRESERVING = {
    CifarBasicBlock: lambda block: block.preserves_shape,
    _TV.resnet.BasicBlock: lambda block: block.downsample is None,
    _TV.resnet.Bottleneck: lambda block: block.downsample is None,
    _TV.mobilenetv2.InvertedResidual: lambda block: block.use_res_connect,
}


@dataclass(frozen=True)
class RemovalRule:
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
    return type(module) in _SHAPE_PRESERVING


def preserves_shape(block):
    return _SHAPE_PRESERVING[type(block)](block)


def _stages(model):
    """[[block name, ...], ...] in forward order."""
    stages, parent_of_last = [], None
    for name, module in model.named_modules():
        if not is_block(module):
            continue
        parent = name.rpartition(".")[0]
        if not stages or parent != parent_of_last or not preserves_shape(module):
            stages.append([])
        stages[-1].append(name)
        parent_of_last = parent
    return stages


def describe_blocks(model, rule=RemovalRule()):
    """Every residual block, its stage, and whether (or why not) it is removable under `rule`."""
    infos = []
    for stage, names in enumerate(_stages(model), start=1):
        for name in names:
            block = model.get_submodule(name)
            if not preserves_shape(block):
                reason = "changes resolution or width (strided or projection shortcut)"
            elif rule.keep_first and not infos:
                reason = "first block of the network (keep_first)"
            elif len(names) <= rule.min_per_stage:
                reason = f"stage {stage} has {len(names)} blocks and keeps at least {rule.min_per_stage}"
            else:
                reason = ""
            infos.append(BlockInfo(name, stage, not reason, reason))
    if not infos:
        raise ValueError(f"{type(model).__name__} has no residual blocks layerlth knows")
    return infos


def removable_blocks(model, rule=RemovalRule()):
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
