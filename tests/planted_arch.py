"""A module a planted checkpoint names as its architecture: importing it leaves a mark, so a test
can show that nothing read back from storage ever imports it."""

import os
from pathlib import Path

Path(os.environ.get("LAYERLTH_PLANTED_MARK", "/tmp/layerlth-planted-arch-imported")).write_text("imported")


def build(num_classes, image_size):
    raise AssertionError("a planted architecture was built")
