"""Dense runs stored once and shared: Algorithm 1's tickets of every criterion, p and rewind point
start from the same trained dense net and its saved weights, never from a retraining.

A run lives in `<dense_dir>/<dense key>/`: `weights_epoch{e}.pt` for the rewind epochs and the last
epoch, then `result.json`, written last, which marks the run complete. A file lock makes concurrent
trials that need the same run wait for one training instead of each doing their own.
"""

import json
from pathlib import Path

import torch
from filelock import FileLock


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

    def complete(self):
        return self.result_path.is_file()

    def result(self):
        return json.loads(self.result_path.read_text())

    def weights(self, epoch, device="cpu"):
        if epoch not in self.saved_epochs:
            raise ValueError(f"dense run {self.directory} keeps weights of epochs {self.saved_epochs}, not {epoch}")
        return torch.load(self.weights_path(epoch), map_location=device)

    def lock(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.directory / ".lock"))
