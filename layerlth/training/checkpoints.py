"""A trial's state as a file of tensors and plain data: Tune's checkpoints and a finished ticket's
weights. It loads with `weights_only=True` into a network of the trial's own architecture (from its
config; the file only says which blocks and filters are gone), so a file planted in a sweep's
storage cannot run code, nor make a worker build or import anything else: it only fails to load."""

import io
import pickle

import torch

from layerlth.data import image_shape
from layerlth.models.architecture import describe, rebuild


class UnsafeCheckpoint(RuntimeError):
    """A checkpoint holding more than tensors and plain data (or not a checkpoint at all)."""


def _described(model, config):
    size = getattr(config, "image_size", None)  # a streamed dataset's crops
    return describe(model, config.arch, config.shortcut, image_shape(config.dataset, size))


def checkpoint_state(state, config, attempts, nodes=()):
    return {"state_dict": state.model.state_dict(), "architecture": _described(state.model, config),
            "optimizer": state.optimizer.state_dict(), "epoch": state.epoch, "history": state.history,
            "context": {**state.context, "attempts": attempts, "attempt_nodes": list(nodes)}}


def load_state(path, config, source=None):
    """The checkpoint at `path` (or in the file object `source`) as `run_trial`'s `resume`: the
    model of `config`'s architecture, shaped as the checkpoint describes, with its weights."""
    try:
        state = torch.load(source or path, map_location="cpu", weights_only=True)
        size = image_shape(config.dataset, getattr(config, "image_size", None))[-1]
        model = rebuild(state["architecture"], config.arch, config.shortcut, size)
        model.load_state_dict(state["state_dict"])
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError, EOFError, OSError) as error:
        raise UnsafeCheckpoint(f"checkpoint {path} is not a layerlth checkpoint of tensors and plain data; "
                               f"refusing to load it ({type(error).__name__}: {str(error).splitlines()[0]})") from error
    return {**state, "model": model}


def ticket_weights(state, config):
    """A ticket's weights as the driver reads them back (`load_state`): no optimizer, no history."""
    buffer = io.BytesIO()
    torch.save({"state_dict": state.model.state_dict(), "epoch": state.epoch,
                "architecture": _described(state.model, config)}, buffer)
    return buffer.getvalue()
