"""From result rows to the paper: Tables 1-5, figures, an HTML report and a W&B report."""

from layerlth.analysis.report import build

__all__ = ["build"]
