"""Dense runs stored once and shared: Algorithm 1's tickets of every criterion, p and rewind point
start from the same trained dense net and its saved weights, never from a retraining.

A run lives in `<dense_dir>/<dense key>/`: `weights_epoch{e}.pt` for the rewind epochs and the last
epoch, then `result.json`, written last. The run is complete only when result.json and every
weights file it promises exist and load; a run missing any of them is trained again. Weights load
as tensors only (`weights_only=True`): a planted file cannot run code. `dense_dir` is a local path
or an object store URI (`layerlth.storage`). On a local path a file lock makes concurrent trials
that need the same run wait for one training instead of each doing their own; across the nodes of
a sweep the driver lets one trial at a time own a dense run (`layerlth.sweep.dense_gate`).
"""

import contextlib
import io
import logging
import pickle
import zipfile
from pathlib import Path

import torch
from filelock import FileLock

from layerlth.storage import Storage

log = logging.getLogger("layerlth")
_UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)


def default_rewind_epochs(epochs):
    """0, 25, 50 and 75 of 200 epochs (the paper's theta_i), scaled to `epochs`."""
    return tuple(sorted({0, round(epochs / 8), round(epochs / 4), round(3 * epochs / 8)}))


class DenseRun:
    def __init__(self, config, epochs):
        self.epochs = epochs
        self.rewind_epochs = tuple(config.rewind_epochs) or default_rewind_epochs(epochs)
        self.storage = Storage(config.dense_dir).child(config.dense_key())
        self.directory = self.storage.location

    @property
    def saved_epochs(self):
        return tuple(sorted({*self.rewind_epochs, self.epochs}))

    @staticmethod
    def weights_name(epoch):
        return f"weights_epoch{epoch}.pt"

    def weights_path(self, epoch):
        return self.storage.path(self.weights_name(epoch))

    @property
    def result_path(self):
        return self.storage.path("result.json")

    def problems(self):
        """What keeps the run from being complete: missing or unreadable files (empty: complete)."""
        if not self.storage.exists("result.json"):
            return [f"{self.result_path} is missing"]
        found = []
        try:
            self.result()
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
        if problems and self.storage.exists("result.json"):
            log.warning("dense run %s is incomplete, it will be trained again: %s", self.directory, "; ".join(problems))
        return not problems

    def result(self):
        return self.storage.read_json("result.json")

    def save_result(self, result):
        self.storage.write_json("result.json", result)

    def save_weights(self, state):
        """Training callback: the weights after each of `saved_epochs` (0 = before training)."""
        if state.epoch in self.saved_epochs:
            buffer = io.BytesIO()
            torch.save(state.model.state_dict(), buffer)
            self.storage.write_bytes(self.weights_name(state.epoch), buffer.getvalue())

    def weights(self, epoch, device="cpu"):
        if epoch not in self.saved_epochs:
            raise ValueError(f"dense run {self.directory} keeps weights of epochs {self.saved_epochs}, not {epoch}")
        data = io.BytesIO(self.storage.read_bytes(self.weights_name(epoch)))
        return torch.load(data, map_location=device, weights_only=True)

    def lock(self):
        """A file lock on local storage; none on an object store, where the sweep's driver
        decides the one trial that trains each dense run."""
        if not self.storage.local:
            return contextlib.nullcontext()
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        return FileLock(str(Path(self.directory) / ".lock"))
