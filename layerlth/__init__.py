"""layerlth: layer-pruning lottery tickets — find removable residual blocks at initialisation."""

from layerlth.criteria import CRITERIA, score_blocks
from layerlth.foundations.config import TrialConfig
from layerlth.measure.costs import count_macs, count_params
from layerlth.models import (
    RemovalRule,
    build_for_images,
    build_model,
    describe_blocks,
    register_block,
    removable_blocks,
    remove_blocks,
)
from layerlth.tickets.trial import run_trial

__version__ = "0.1.0"
__all__ = [
    "CRITERIA",
    "RemovalRule",
    "TrialConfig",
    "build_for_images",
    "build_model",
    "count_macs",
    "count_params",
    "describe_blocks",
    "register_block",
    "removable_blocks",
    "remove_blocks",
    "run_trial",
    "score_blocks",
]
