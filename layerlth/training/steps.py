"""A training step, two ways: eager (any device), or captured whole as a CUDA graph and replayed.

`EagerStep` runs forward, loss, backward and the SGD step op by op, as PyTorch does by default.
`GraphedStep` (CUDA only) follows PyTorch's whole-network capture recipe (torch.cuda.graphs, "Whole
network capture"): the run's first `WARMUP_STEPS` steps run eagerly on the run's own side stream
(they are real training steps, and create the gradients and momentum buffers), then one full-size
step is captured as a `torch.cuda.CUDAGraph` (forward under bf16 autocast with its cache off, as
capture needs; loss; backward; a fused SGD step whose learning rate is a device tensor, so the
schedule changes by `fill_` without a recapture) and every later full batch is copied into the
graph's static input and label buffers and replayed. The epoch's partial last batch runs eagerly
(once per epoch), so a graphed run trains on exactly the batches an eager one does. A capture that
fails (an op the graph cannot hold, say in a user's model) is logged and the run goes on eagerly on
the same stream; `fallback` says why, and the trial's row with it. Capture, replay and the stream
rules (inputs recorded on the side stream, the lr written in order with the replays) are
`graphs.Graphs`, the one mechanism every graphed path uses.

Each step keeps the epoch's running loss sum and correct count on the device (no sync per step);
`totals()` reads them. A graphed run does all its work on its own CUDA stream, so several runs
replayed one after another from Python execute side by side on the GPU (`layerlth.training.packs.pack`).
"""

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from layerlth.training.graphs import WARMUP_STEPS, Graphs, capture_failure  # noqa: F401 - the engine's names


def autocast(device, amp):
    """bf16 autocast on CUDA or CPU when asked (`layerlth.training.fastpath` decides where it pays);
    full precision otherwise. Losses are computed on float logits either way."""
    device_type = torch.device(device).type
    if amp and device_type in ("cuda", "cpu"):
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return nullcontext()


def widened(logits):
    """Logits as the loss takes them: bf16 and fp32 as fp32, fp64 as it is (tests in float64)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def set_lr(optimizer, lr):
    """Every group's learning rate; a tensor lr (a captured step reads it) is filled in place."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def make_graphable(optimizer, device):
    """SGD as capture needs it: the fused implementation with the lr as a device tensor (the foreach
    one with a tensor lr fails capture). Applied after any `load_state_dict`, which brings back the
    checkpoint's float lr and implementation flags."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=device)
        group["fused"], group["foreach"] = True, False
    return optimizer


def make_eager(optimizer):
    """SGD as an eager step runs it: a float lr and PyTorch's default implementation, also when the
    state came from a graphed run's checkpoint (a tensor lr, the fused flag)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = float(group["lr"])
        if group.get("fused"):
            group["fused"], group["foreach"] = None, None
    return optimizer


class EagerStep:
    graphed, fallback = False, None

    def __init__(self, model, optimizer, amp, runner=None, smoothing=0.0):
        self.model, self.optimizer, self.amp = model, make_eager(optimizer), amp
        self.runner = model if runner is None else runner
        self.smoothing = smoothing  # the recipe's label smoothing
        self.loss_sum = self.correct = None

    def set_lr(self, lr):
        set_lr(self.optimizer, lr)

    def start_epoch(self, device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def step(self, inputs, labels, eager=True, into=None):
        """One step; its loss sum and correct count go to the running sums, or to `into` (a fused
        member's step alone: its group's sums, added in step order as its own would be)."""
        loss_sum, correct = into or (self.loss_sum, self.correct)
        with autocast(inputs.device, self.amp):
            logits = self.runner(inputs)
            loss = F.cross_entropy(widened(logits), labels, label_smoothing=self.smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        loss_sum += loss.detach() * len(labels)  # stays on the device: no sync per step
        correct += (logits.argmax(1) == labels).sum()

    def sync(self):
        """Its steps run on the caller's stream: nothing to wait for."""

    def totals(self):
        return float(self.loss_sum), int(self.correct)


class GraphedStep:
    """The whole step as a CUDA graph (`graphs.Graphs`), on the run's own stream."""

    def __init__(self, model, optimizer, amp, batch_size, warmup=WARMUP_STEPS, smoothing=0.0):
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"a graphed training step needs a CUDA device, not {device}")
        self.model, self.optimizer, self.amp = model, make_graphable(optimizer, device), amp
        self.batch_size, self.device, self.smoothing = batch_size, device, smoothing
        self.graphs = Graphs(device, "this run", warmup, before_capture=self._before_capture)
        self.stream = self.graphs.stream
        self.captured = False  # a graph was captured once (the gradients it made persist)
        with torch.cuda.stream(self.stream):
            self.loss_sum = torch.zeros((), device=device)
            self.correct = torch.zeros((), device=device, dtype=torch.long)

    @property
    def graphed(self):
        return self.graphs.graphed

    @property
    def fallback(self):
        """Why the run went on eagerly (a failed capture), or None."""
        return self.graphs.fallback

    def set_lr(self, lr):
        """The lr tensor the graph reads, refilled on its stream: after the replays queued before."""
        self.graphs.write(lambda: set_lr(self.optimizer, lr))

    def start_epoch(self, device):
        self.graphs.run(lambda: (self.loss_sum.zero_(), self.correct.zero_()))

    def _before_capture(self):
        if not self.captured:
            self.optimizer.zero_grad(set_to_none=True)  # backward in the graph writes fresh gradients

    def _step(self, inputs, labels, loss_sum=None, correct=None):
        """forward, loss, backward, SGD, sums (its own, or those given); in a capture after the
        first, the gradients the first graph made are zeroed by the graph itself (a graph owns them)."""
        capturing = torch.cuda.is_current_stream_capturing()
        if not capturing or self.captured:
            self.optimizer.zero_grad(set_to_none=False)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            logits = self.model(inputs)
            loss = F.cross_entropy(widened(logits), labels, label_smoothing=self.smoothing)
        loss.backward()
        self.optimizer.step()
        (self.loss_sum if loss_sum is None else loss_sum).add_(loss.detach() * len(labels))
        (self.correct if correct is None else correct).add_((logits.argmax(1) == labels).sum())
        self.captured = self.captured or capturing

    def step(self, inputs, labels, eager=False, into=None):
        """One step; the partial last batch (and any step asked `eager`) runs eagerly. `into`: an
        eager step's sums go there (see `EagerStep.step`), after which the caller's stream waits."""
        if into is not None:
            self.graphs(self._step, inputs, labels, *into, eager=True)
            self.sync()
            return
        self.graphs(self._step, inputs, labels, eager=eager or len(labels) != self.batch_size, one_shape=True)

    def sync(self):
        self.graphs.sync()

    def totals(self):
        self.sync()
        return float(self.loss_sum), int(self.correct)
