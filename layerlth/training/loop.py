"""The training loop: SGD over device-side batches, evaluation every epoch, callbacks for the rest.
A `Run` is one training as a sequence of steps, so that a pack can step several in turn.

Checkpointing, progress lines and metric reporting all enter through callbacks, called once before
the first epoch (metrics None) and after every epoch with an `EpochState`; a callback that returns
True stops training after that epoch (early stopping).
"""

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from layerlth.data import Batches
from layerlth.foundations.atomic import save_atomic
from layerlth.training.boundary import RunReport, RunTerms
from layerlth.training.steps import EagerStep, GraphedStep, autocast, widened

log = logging.getLogger("layerlth")


@dataclass
class EpochState:
    epoch: int  # epochs completed
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    metrics: dict | None
    history: list  # metrics of every epoch so far, those of earlier attempts included
    context: dict  # what the trial knows of the model (removed blocks, scores), for checkpoints


@torch.no_grad()
def evaluate(model, batches, amp=False, reduce=None):
    """(mean loss, accuracy) over `batches`; `reduce` adds the sums of other ranks' batches in.
    The sums stay on the device (float64: each batch's float32 sum is added exactly as a Python
    float would be) and are read once, not once per batch."""
    model.eval()
    # 0-dim CPU tensors: added to a batch's sums they move to its device
    loss, correct, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.long), 0
    for inputs, labels in batches:
        with autocast(inputs.device, amp):
            logits = model(inputs)
        loss = loss + F.cross_entropy(widened(logits), labels, reduction="sum").double()
        correct = correct + (logits.argmax(1) == labels).sum()
        count += len(labels)
    loss, correct = float(loss), int(correct)
    if reduce is not None:
        loss, correct, count = reduce([loss, correct, count])
    return loss / count, correct / count


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite: the run stops as failed."""


class Run:
    """One training: a net going from `start_epoch` to `stop_epoch` (default: the recipe's last),
    the lr following the recipe's schedule for those epochs. `train` runs one alone; a pack
    (`layerlth.training.packs`) steps several in turn. `history` holds the metrics of epochs trained
    before (a resumed run); `self.history` adds the new ones.

    `runner` runs the training steps: `model` itself (default), or `model` under torch.compile
    (`compile_for_training`). With `graph`, the steps are CUDA-graph replays (`steps.GraphedStep`).
    Evaluation, callbacks and so checkpoints see `model`, the plain module: its state_dict has no
    `_orig_mod.` prefixes. `terms` (`boundary.RunTerms`) is what a pack, fusion, energy metering and
    data-parallel training need of the run; with `terms.parallel` the net is wrapped in DDP here,
    after it has its memory format (DDP's gradient buckets take the parameters' strides then).
    What they record about it goes to `report` (`boundary.RunReport`).

    Each epoch's batch order and augmentation come from a generator seeded by (seed, epoch), so a
    run restarted at any epoch sees the same batches as one that never stopped.
    """

    def __init__(self, model, data, recipe, seed=0, start_epoch=0, stop_epoch=None, callbacks=(), amp=False,
                 channels_last=False, optimizer=None, history=(), context=None, runner=None, graph=False,
                 name="run", terms=None):
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=self.memory_format)
        self.terms = terms or RunTerms(label=name)
        if self.terms.parallel is not None:
            runner = self.terms.parallel.wrap(model if runner is None else runner)
        self.model, self.data, self.recipe, self.seed, self.name = model, data, recipe, seed, name
        self.optimizer = optimizer or recipe.optimizer(model)
        smoothing = recipe.label_smoothing
        self.stepper = (GraphedStep(model, self.optimizer, amp, recipe.batch_size, smoothing=smoothing) if graph
                        else EagerStep(model, self.optimizer, amp, runner, smoothing=smoothing))
        self.amp, self.callbacks, self.history = amp, list(callbacks), list(history)
        self.context = {} if context is None else context
        self.test = Batches(data, 512, train=False, memory_format=self.memory_format)
        self.epoch, self.last = start_epoch, recipe.epochs if stop_epoch is None else stop_epoch
        self.images = 0  # training images stepped, in all (a pack splits energy by images x MACs)
        self.report = RunReport()
        self.batches, self.done = None, False
        self._before_callbacks = None  # what a pack does first at each epoch's end (settle energy)
        self._delivered = None  # a fused group's sums for the epoch it trained (`deliver`)
        self._error = None  # an error of its fused group's step: raised at its next step

    @property
    def graphed(self):
        return self.stepper.graphed

    @property
    def reduce(self):
        """Data-parallel: the epoch sums over all ranks (`parallel.Parallel.reduce`); else None."""
        return None if self.terms.parallel is None else self.terms.parallel.reduce

    def begin(self, before_callbacks=None):
        """The callbacks' look before the first epoch; then the first epoch's batches.
        `before_callbacks`: what the pack does at each epoch's end before the callbacks see it."""
        self._before_callbacks = before_callbacks
        _call(self.callbacks, EpochState(self.epoch, self.model, self.optimizer, None, self.history, self.context))
        self._open_epoch()

    def _open_epoch(self):
        if self.epoch >= self.last:
            self.done = True
            return
        self.stepper.set_lr(self.recipe.lr_at(self.epoch))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        batches = Batches(self._training_data(), self.recipe.batch_size, True, generator,
                          memory_format=self.memory_format)
        self.steps_in_epoch, self.step_index = len(batches), 0
        self.epoch_batches, self.batches = batches, iter(batches)  # a fused group may make them instead
        getattr(self.stepper, "runner", self.model).train()  # a compiled runner tracks the mode itself
        self.stepper.start_epoch(self.data.device)
        self.seen, self.started = 0, time.perf_counter()

    def _training_data(self):
        """The data this epoch trains on: at the recipe's crop size for the epoch (progressive
        resizing: only a streamed dataset crops at any size)."""
        size = self.data.image_size[-1]
        wanted = self.recipe.train_size(self.epoch, size)
        return self.data if wanted == size else self.data.at_size(wanted)

    def step(self):
        """One training batch, or at the epoch's end its evaluation and callbacks; False once over."""
        if self.done:
            return False
        if self._error is not None:
            error, self._error, self.done = self._error, None, True
            raise error
        batch = self.take_batch()
        if batch is not None:
            if self.recipe.per_step:
                self.stepper.set_lr(self.next_lr())
            if self.report.own_peak_bytes is None and batch[0].is_cuda:
                self.report.peak(_measured_step(self.model, self.optimizer, self.stepper, batch))
            else:
                self.stepper.step(*batch)
            self.count(batch)
            return True
        self._close_epoch()
        return not self.done

    def take_batch(self):
        """The epoch's next training batch, or None at its end."""
        return next(self.batches, None)

    def count(self, batch):
        self.seen += len(batch[1])
        self.images += len(batch[1])

    def next_lr(self):
        """The lr of the step about to run; a per-step schedule (FFCV's rule: linear between the
        epoch's ends, by step) moves on by one step."""
        if not self.recipe.per_step:
            return self.recipe.lr_at(self.epoch)
        fraction = self.step_index / max(1, self.steps_in_epoch)
        self.step_index += 1
        return self.recipe.lr_at(self.epoch + fraction)

    @property
    def at_epoch_start(self):
        """Open, no step of this epoch taken yet (a pack may fuse it with others here)."""
        return not self.done and self.batches is not None and self.seen == 0

    # ------------------------------------------------ what a fused group asks of its members
    def hand_over_batches(self):
        """This epoch's batches are made by a fused group (or, for a follower, by its leader)."""
        self.batches = iter(())

    def restart_clock(self):
        """The epoch's time starts now, with its fused group's."""
        self.started = time.perf_counter()

    def step_alone(self, batch, lr, into):
        """One step of its own, eager, on `batch` at `lr`: a fused member on a step its group cannot
        fuse (its members' batches differ in size); its loss sum and correct count are added to
        `into`, its group's sums for it, as its own step would add them to its own."""
        self.stepper.set_lr(lr)
        self.stepper.step(*batch, eager=True, into=into)
        self.count(batch)

    def deliver(self, train, test=None, trained_at=None):
        """The epoch's sums as its fused group computed them: train (loss sum, correct), test
        (loss, accuracy) or None (evaluated here), and when its training ended (before evaluation,
        as a run alone times it)."""
        self._delivered = {"train": train, "test": test, "trained_at": trained_at}

    def mirror(self, leader):
        """A follower takes its leader's delivered sums (it trained exactly as its leader did)."""
        self._delivered = dict(leader._delivered)

    def fail(self, error):
        """Its fused group's step failed: it fails with `error` at its next step."""
        self._error = error

    def measure_alone(self, batch):
        """A fused member's own CUDA peak: one step of a copy of it, alone (`_measured_step`)."""
        model = copy.deepcopy(self.model)
        optimizer = self.recipe.optimizer(model)
        optimizer.load_state_dict(self.optimizer.state_dict())
        stepper = EagerStep(model, optimizer, self.amp, smoothing=self.recipe.label_smoothing)
        stepper.start_epoch(batch[0].device)
        self.report.peak(_measured_step(model, optimizer, stepper, batch))

    def _epoch_sums(self):
        """(loss sum, correct, test or None, seconds): the steps' own sums, plus a fused group's."""
        delivered, self._delivered = self._delivered, None
        if delivered is None:
            loss_sum, correct = self.stepper.totals()  # read from the device now: its steps are done
            return loss_sum, correct, None, time.perf_counter() - self.started
        loss_sum, correct = delivered["train"]
        return loss_sum, correct, delivered["test"], (delivered["trained_at"] or time.perf_counter()) - self.started

    def _close_epoch(self):
        loss_sum, correct, test, seconds = self._epoch_sums()
        seen = self.seen
        if self.reduce is not None:
            loss_sum, correct, seen = self.reduce([loss_sum, correct, seen])
        if not math.isfinite(loss_sum):
            self.done = True
            raise TrainingDiverged(f"{self.name}: training loss is {loss_sum} in epoch {self.epoch + 1}")
        test_loss, test_acc = test or evaluate(self.model, self.test, self.amp, self.reduce)
        lr = self.recipe.lr_at(self.epoch)
        self.epoch += 1
        metrics = {
            "epoch": self.epoch, "lr": lr, "train_loss": loss_sum / seen, "train_acc": correct / seen,
            "test_loss": test_loss, "test_acc": test_acc, "epoch_seconds": seconds,
            "images_per_second": seen / seconds,
        }
        self.history.append(metrics)
        if self._before_callbacks:
            self._before_callbacks()
        if _call(self.callbacks, EpochState(self.epoch, self.model, self.optimizer, metrics, self.history,
                                            self.context)):
            self.done = True
            return
        self._open_epoch()


def _measured_step(model, optimizer, stepper, batch):
    """One step, synchronised; the CUDA memory it takes beyond what was allocated plus the tensors
    the run keeps: a member's own peak even when other runs share the process (theirs are not
    running)."""
    device = batch[0].device
    kept = [p for p in model.parameters()] + [p.grad for p in model.parameters() if p.grad is not None]
    kept += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    stepper.step(*batch)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base + sum(t.numel() * t.element_size() for t in kept)


def train(model, data, recipe, seed=0, start_epoch=0, stop_epoch=None, callbacks=(), amp=False,
          channels_last=False, optimizer=None, history=(), context=None, runner=None, graph=False):
    """Train `model` (already on data's device) alone: a `Run` stepped to its end; returns its
    history (the metrics of every epoch, those of `history` first)."""
    run = Run(model, data, recipe, seed, start_epoch, stop_epoch, callbacks, amp, channels_last, optimizer,
              history, context, runner, graph)
    run.begin()
    while run.step():
        pass
    return run.history


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
        for size in batch_sizes(data.train_size, batch_size):
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
