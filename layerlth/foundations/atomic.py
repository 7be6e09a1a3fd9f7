"""Files written so that a crash never leaves a half-written one behind."""

import json
import os
import tempfile
from pathlib import Path

import torch


def write_atomic(path, write):
    """Call `write(handle)` on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_atomic(obj, path):
    """torch.save to `path` through a temporary file in the same directory, then rename."""
    return write_atomic(path, lambda handle: torch.save(obj, handle))


def write_json_atomic(obj, path):
    return write_atomic(path, lambda handle: handle.write(json.dumps(obj, indent=2, default=str).encode()))
