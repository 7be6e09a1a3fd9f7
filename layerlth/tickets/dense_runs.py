"""Dense runs stored once and shared: Algorithm 1's tickets of every criterion, p and rewind point
start from the same trained dense net and its saved weights, never from a retraining.

A run lives in `<dense_dir>/<dense key>/`: `weights_epoch{e}.pt` for the rewind epochs and the last
epoch, then `manifest.json` (each weights file's size and sha256, hashed from the bytes read back
from storage), then `result.json`, written last. The run is complete when result.json exists and
every weights file it promises has the size its manifest says: a recheck (the driver's, every 30 s)
reads no weights. A file is hashed when it is loaded, and one whose hash differs from the manifest
is damaged: its run is set aside (result.json.corrupt) and trained again. A run stored before
manifests existed is checked once by loading every file, then gets its manifest; a run missing or
failing any of this is trained again. Weights load as tensors only (`weights_only=True`): a planted
file cannot run code. `dense_dir` is a local path
or an object store URI (`layerlth.foundations.storage`). On a local path a file lock makes concurrent trials
that need the same run wait for one training instead of each doing their own; across the nodes of
a sweep the driver lets one trial at a time own a dense run (`layerlth.sweep.tune.dense_gate`).
"""

import contextlib
import hashlib
import io
import logging
import pickle
import zipfile
from pathlib import Path

import torch
from filelock import FileLock

from layerlth.foundations.storage import Storage

log = logging.getLogger("layerlth")
_UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)


class DamagedWeights(ValueError):
    """A weights file whose bytes are not the ones its manifest recorded."""


def file_entry(data):
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


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
        """What keeps the run from being complete: missing, cut or unreadable files (empty: complete)."""
        if not self.storage.exists("result.json"):
            return [f"{self.result_path} is missing"]
        found = []
        try:
            self.result()
        except (OSError, ValueError) as error:
            found.append(f"{self.result_path} is unreadable ({error})")
        manifest = self.manifest()
        return found + (self._against(manifest) if manifest else self._by_loading())

    def _against(self, manifest):
        """Each promised file listed in the manifest, with its size: no file is read."""
        found = []
        for epoch in self.saved_epochs:
            name, path = self.weights_name(epoch), self.weights_path(epoch)
            entry = manifest.get(name)
            try:
                size = self.storage.size(name)
            except FileNotFoundError:
                found.append(f"{path} is missing")
                continue
            if entry is None:
                found.append(f"{path} is not in {self.storage.path('manifest.json')}")
            elif size != entry["size"]:
                found.append(f"{path} has {size} bytes, its manifest says {entry['size']}")
        return found

    def _by_loading(self):
        """A run stored before manifests: load every file once, and record them when all load."""
        found, files = [], {}
        for epoch in self.saved_epochs:
            name = self.weights_name(epoch)
            try:
                data = self.storage.read_bytes(name)
                self._load(data)
                files[name] = file_entry(data)
            except _UNREADABLE as error:
                found.append(f"{self.weights_path(epoch)} does not load ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''})")
        if not found:
            self.storage.write_json("manifest.json", {"files": files})
        return found

    def manifest(self):
        """{weights file name: {"size", "sha256"}}; None when there is no readable manifest."""
        if not self.storage.exists("manifest.json"):
            return None
        try:
            files = self.storage.read_json("manifest.json")["files"]
            return files if all({"size", "sha256"} <= set(e) for e in files.values()) else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # checked the old way, which writes it again

    def complete(self):
        problems = self.problems()
        if problems and self.storage.exists("result.json"):
            log.warning("dense run %s is incomplete, it will be trained again: %s", self.directory, "; ".join(problems))
        return not problems

    def result(self):
        return self.storage.read_json("result.json")

    def discard_result(self):
        self.storage.delete("result.json")
        self.storage.delete("manifest.json")

    def save_result(self, result):
        """The manifest of the weights as storage holds them (read back, not as sent), then result.json."""
        files = {self.weights_name(e): file_entry(self.storage.read_bytes(self.weights_name(e)))
                 for e in self.saved_epochs}
        self.storage.write_json("manifest.json", {"files": files})
        self.storage.write_json("result.json", result)

    def save_weights(self, state):
        """Training callback: the weights after each of `saved_epochs` (0 = before training)."""
        if state.epoch in self.saved_epochs:
            buffer = io.BytesIO()
            torch.save(state.model.state_dict(), buffer)
            self.storage.write_bytes(self.weights_name(state.epoch), buffer.getvalue())

    def weights(self, epoch, device="cpu"):
        """The weights of `epoch`, checked against the manifest when the run has one."""
        if epoch not in self.saved_epochs:
            raise ValueError(f"dense run {self.directory} keeps weights of epochs {self.saved_epochs}, not {epoch}")
        name = self.weights_name(epoch)
        data = self.storage.read_bytes(name)
        entry = (self.manifest() or {}).get(name)
        if entry and file_entry(data) != entry:
            self.set_aside()
            raise DamagedWeights(f"{self.weights_path(epoch)} is damaged: its sha256 {file_entry(data)['sha256']} "
                                 f"({len(data)} bytes) is not the manifest's {entry['sha256']} ({entry['size']} "
                                 f"bytes); the dense run will be trained again")
        return self._load(data, device)

    @staticmethod
    def _load(data, device="cpu"):
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)

    def set_aside(self):
        """Mark the run incomplete, keeping its record (result.json.corrupt), so it is trained again."""
        log.warning("dense run %s has a damaged weights file; it will be trained again", self.directory)
        with contextlib.suppress(FileNotFoundError):
            self.storage.move("result.json", "result.json.corrupt")

    def lock(self):
        """A file lock on local storage; none on an object store, where the sweep's driver
        decides the one trial that trains each dense run."""
        if not self.storage.local:
            return contextlib.nullcontext()
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        return FileLock(str(Path(self.directory) / ".lock"))
