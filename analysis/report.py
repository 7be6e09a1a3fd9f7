#!/usr/bin/env python
"""The report of a sweep: the paper's Tables 1-5 beside ours, figures, report.html, W&B report.

  python analysis/report.py results/sweeps/paper      # writes results/sweeps/paper/report/
  python analysis/report.py --help                    # the manual

The same as `layerlth report`; the logic lives in layerlth/analysis/, the paper's numbers in
analysis/paper.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from layerlth.analysis.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
