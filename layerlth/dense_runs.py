"""Dense runs stored once and shared: Algorithm 1's tickets of every criterion, p and rewind point
start from the same trained dense net and its saved weights, never from a retraining.

A run lives in `<dense_dir>/<dense key>/`: `weights_epoch{e}.pt` for the rewind epochs and the last
epoch, then `result.json`, written last. The run is complete only when result.json and every
weights file it promises exist and load; a run missing any of them is trained again. A file lock
makes concurrent trials that need the same run wait for one training instead of each doing their
own. Weights load as tensors only (`weights_only=True`): a planted file cannot run code.
"""

import json
import logging
import pickle
import zipfile
from pathlib import Path

import torch
from filelock import FileLock

log = logging.getLogger("layerlth")
_UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)


def default_rewind_epochs(epochs):
    """0, 25, 50 and 75 of 200 epochs (the paper's theta_i), scaled to `epochs`."""
    return tuple(sorted({0, round(epochs / 8), round(epochs / 4), round(3 * epochs / 8)}))


class DenseRun:
    def __init__(self, config, epochs):
        self.epochs = epochs
        self.rewind_epochs = tuple(config.rewind_epochs) or default_rewind_epochs(epochs)
        self.directory = Path(config.dense_dir) / config.dense_key()

    @property
    def saved_epochs(self):
        return tuple(sorted({*self.rewind_epochs, self.epochs}))

    def weights_path(self, epoch):
        return self.directory / f"weights_epoch{epoch}.pt"

    @property
    def result_path(self):
        return self.directory / "result.json"

    def problems(self):
        """What keeps the run from being complete: missing or unreadable files (empty: complete)."""
        if not self.result_path.is_file():
            return [f"{self.result_path} is missing"]
        found = []
        try:
            json.loads(self.result_path.read_text())
        except (OSError, ValueError) as error:
            found.append(f"{self.result_path} is unreadable ({error})")
        for epoch in self.saved_epochs:
            try:
                self.weights(epoch)
            except _UNREADABLE as error:
                found.append(f"{self.weights_path(epoch)} does not load ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''})")
        return found

    def complete(self):
        problems = self.problems()
        if problems and self.result_path.is_file():
            log.warning("dense run %s is incomplete, it will be trained again: %s", self.directory, "; ".join(problems))
        return not problems

    def result(self):
        return json.loads(self.result_path.read_text())

    def weights(self, epoch, device="cpu"):
        if epoch not in self.saved_epochs:
            raise ValueError(f"dense run {self.directory} keeps weights of epochs {self.saved_epochs}, not {epoch}")
        return torch.load(self.weights_path(epoch), map_location=device, weights_only=True)

    def lock(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.directory / ".lock"))
