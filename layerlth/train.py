"""The training loop: SGD over device-side batches, evaluation every epoch, callbacks for the rest.

Checkpointing, progress lines and metric reporting all enter through callbacks, called once before
the first epoch (metrics None) and after every epoch with an `EpochState`; a callback that returns
True stops training after that epoch (early stopping).
"""

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from layerlth.checkpoints import save_atomic
from layerlth.data import Batches

log = logging.getLogger("layerlth")


@dataclass
class EpochState:
    epoch: int  # epochs completed
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    metrics: dict | None
    history: list  # metrics of every epoch so far, those of earlier attempts included
    context: dict  # what the trial knows of the model (removed blocks, scores), for checkpoints


def autocast(device, amp):
    """bf16 autocast on CUDA or CPU when asked (`layerlth.fastpath` decides where it pays);
    full precision otherwise. Losses are computed on float logits either way."""
    device_type = torch.device(device).type
    if amp and device_type in ("cuda", "cpu"):
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate(model, batches, amp=False):
    model.eval()
    loss = correct = count = 0
    for inputs, labels in batches:
        with autocast(inputs.device, amp):
            logits = model(inputs)
        loss += float(F.cross_entropy(logits.float(), labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
        count += len(labels)
    return loss / count, correct / count


def _train_epoch(model, optimizer, batches, amp):
    model.train()
    loss_sum = torch.zeros((), device=batches.x.device)
    correct = torch.zeros((), device=batches.x.device, dtype=torch.long)
    count = 0
    for inputs, labels in batches:
        with autocast(inputs.device, amp):
            logits = model(inputs)
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(labels)  # stays on the device: no sync per step
        correct += (logits.argmax(1) == labels).sum()
        count += len(labels)
    return float(loss_sum) / count, int(correct) / count, count


def train(model, data, recipe, seed=0, start_epoch=0, stop_epoch=None, callbacks=(), amp=False,
          channels_last=False, optimizer=None, history=(), context=None, runner=None):
    """Train `model` (already on data's device) from `start_epoch` to `stop_epoch` (default: the
    recipe's last); the lr follows the recipe's schedule for those epochs. `history` holds the
    metrics of epochs trained before (a resumed run); the return value adds the new ones.

    `runner` runs the training steps: `model` itself (default), or `model` under torch.compile
    (`compile_for_training`). Evaluation, callbacks and so checkpoints see `model`, the plain module:
    its state_dict has no `_orig_mod.` prefixes.

    Each epoch's batch order and augmentation come from a generator seeded by (seed, epoch), so a
    run restarted at any epoch sees the same batches as one that never stopped.
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    optimizer = optimizer or recipe.optimizer(model)
    runner = model if runner is None else runner
    test = Batches(data, 512, train=False, memory_format=memory_format)
    history = list(history)
    context = context or {}
    _call(callbacks, EpochState(start_epoch, model, optimizer, None, history, context))
    for epoch in range(start_epoch, recipe.epochs if stop_epoch is None else stop_epoch):
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(epoch)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        batches = Batches(data, recipe.batch_size, True, generator, memory_format=memory_format)
        started = time.perf_counter()
        train_loss, train_acc, seen = _train_epoch(runner, optimizer, batches, amp)
        seconds = time.perf_counter() - started  # the float() reads above synchronise the device
        test_loss, test_acc = evaluate(model, test, amp)
        metrics = {
            "epoch": epoch + 1, "lr": recipe.lr_at(epoch), "train_loss": train_loss,
            "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
            "epoch_seconds": seconds, "images_per_second": seen / seconds,
        }
        history.append(metrics)
        if _call(callbacks, EpochState(epoch + 1, model, optimizer, metrics, history, context)):
            break
    return history


def batch_sizes(n, batch_size):
    """The sizes of the training batches `Batches` makes of n images: full ones and a last partial
    one (one image is skipped: BN cannot train on it)."""
    return sorted({size for size in (min(n, batch_size), n % batch_size) if size >= 2})


def compile_for_training(model, data, batch_size, amp=False, channels_last=False, mode="default"):
    """`model` under torch.compile, compiled now by warm-up steps; returns (compiled, seconds).

    torch.compile is lazy: left alone it would compile inside the first training step (and again at
    the epoch's partial last batch), and those seconds would be counted as training. Instead one
    forward and backward pass per training batch size (full and partial; `dynamic=False`: each gets
    static-shape kernels, as the benchmark measured) is run here and timed with the device synced:
    that is the compile cost the row reports (`compile_seconds`; it includes one step's compute per
    size, small beside compiling), and no compilation falls inside a timed epoch. The warm-up leaves
    no trace: no optimizer step, gradients cleared, BN statistics and the global RNG restored, so
    training goes on exactly as it would have. Only training steps are compiled: evaluation (another
    graph, in eval mode without grad) and every measurement run on the plain `model`.
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)  # before compiling: the graph specialises on the weights' layout
    torch.compiler.reset()  # a reused worker compiled earlier trials' nets: stay below dynamo's recompile limit
    compiled = torch.compile(model, mode=mode, dynamic=False)
    inputs, labels = next(iter(Batches(data, batch_size, True, torch.Generator().manual_seed(0),
                                       memory_format=memory_format)))
    device = inputs.device
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.train()
        for size in batch_sizes(len(data.train_x), batch_size):
            with autocast(device, amp):
                loss = F.cross_entropy(compiled(inputs[:size]).float(), labels[:size])
            loss.backward()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return compiled, time.perf_counter() - started


def _call(callbacks, state):
    """Every callback sees the state; True when one of them asks to stop."""
    stop = False
    for callback in callbacks:
        stop = bool(callback(state)) or stop
    return stop


def log_progress(state):
    """Callback: one line per epoch."""
    m = state.metrics
    if m:
        log.info(
            "epoch %d  lr %.4g  train loss %.3f acc %.3f  test loss %.3f acc %.3f  %.1fs  %.0f img/s",
            m["epoch"], m["lr"], m["train_loss"], m["train_acc"], m["test_loss"], m["test_acc"],
            m["epoch_seconds"], m["images_per_second"],
        )


class SaveWeights:
    """Callback: write the model's weights after the listed epochs (0 = before training)."""

    def __init__(self, epochs, directory):
        self.epochs, self.directory = set(epochs), Path(directory)

    def path(self, epoch):
        return self.directory / f"weights_epoch{epoch}.pt"

    def __call__(self, state):
        if state.epoch in self.epochs:
            save_atomic(state.model.state_dict(), self.path(state.epoch))
