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
the same stream; `fallback` says why, and the trial's row with it.

Each step keeps the epoch's running loss sum and correct count on the device (no sync per step);
`totals()` reads them. A graphed run does all its work on its own CUDA stream, so several runs
replayed one after another from Python execute side by side on the GPU (`layerlth.training.pack`).
"""

import logging
from contextlib import nullcontext

import torch
import torch.nn.functional as F

WARMUP_STEPS = 3  # eager steps before capture (PyTorch's recipe warms up on a side stream)
log = logging.getLogger("layerlth")


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


def capture_failure(error):
    """Why a capture failed, in one line: a row's `graph_fallback` and the warning's text."""
    return f"CUDA graph capture failed ({type(error).__name__}: {str(error).splitlines()[0][:200]})"


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

    def start_epoch(self, device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def step(self, inputs, labels):
        with autocast(inputs.device, self.amp):
            logits = self.runner(inputs)
            loss = F.cross_entropy(widened(logits), labels, label_smoothing=self.smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(labels)  # stays on the device: no sync per step
        self.correct += (logits.argmax(1) == labels).sum()

    def totals(self):
        return float(self.loss_sum), int(self.correct)


class GraphedStep:
    graphed, fallback = True, None  # fallback: why the run went on eagerly (a failed capture)
    captured = False  # a graph was captured once (the gradients it made persist)

    def __init__(self, model, optimizer, amp, batch_size, warmup=WARMUP_STEPS, smoothing=0.0):
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"a graphed training step needs a CUDA device, not {device}")
        self.model, self.optimizer, self.amp, self.batch_size = model, make_graphable(optimizer, device), amp, batch_size
        self.device, self.stream, self.smoothing = device, torch.cuda.Stream(device), smoothing
        self.warmup_left, self.graph = warmup, None
        self.static_x = self.static_y = None
        with torch.cuda.stream(self.stream):
            self.loss_sum = torch.zeros((), device=device)
            self.correct = torch.zeros((), device=device, dtype=torch.long)

    def start_epoch(self, device):
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            self.loss_sum.zero_()
            self.correct.zero_()

    def _forward_backward(self, inputs, labels):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            logits = self.model(inputs)
            loss = F.cross_entropy(widened(logits), labels, label_smoothing=self.smoothing)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(labels)
        self.correct += (logits.argmax(1) == labels).sum()

    def _eager(self, inputs, labels):
        self.optimizer.zero_grad(set_to_none=False)  # the captured graph owns these gradient buffers
        self._forward_backward(inputs, labels)

    def _capture(self, inputs, labels):
        """Capture the step for this batch shape. A new shape (progressive resizing) replaces the
        graph; the gradients the first graph made persist, so a later graph zeroes them itself."""
        torch.cuda.synchronize(self.device)
        self.graph = None  # the old graph's memory goes before the new one is captured
        self.static_x, self.static_y = inputs.clone(), labels.clone()
        if not self.captured:
            self.optimizer.zero_grad(set_to_none=True)  # backward in the graph writes fresh gradients
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            if self.captured:
                self.optimizer.zero_grad(set_to_none=False)
            self._forward_backward(self.static_x, self.static_y)
        self.graph, self.captured = graph, True

    def step(self, inputs, labels):
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)  # the batch (and any lr change) was made on the caller's stream
        inputs.record_stream(self.stream)
        labels.record_stream(self.stream)
        with torch.cuda.stream(self.stream):
            if len(labels) != self.batch_size or self.warmup_left > 0 or self.fallback:
                self.warmup_left -= len(labels) == self.batch_size
                self._eager(inputs, labels)
                return
            if self.graph is None or inputs.shape != self.static_x.shape:
                try:
                    self._capture(inputs, labels)  # capture runs nothing: replay below does the step
                except RuntimeError as error:
                    self._give_up(error)
                    self._eager(inputs, labels)
                    return
            self.static_x.copy_(inputs)
            self.static_y.copy_(labels)
            self.graph.replay()

    def _give_up(self, error):
        """Eager steps from now on: the capture left nothing behind but fresh gradients to make."""
        torch.cuda.synchronize(self.device)
        self.graph, self.graphed = None, False
        self.fallback = capture_failure(error)
        log.warning("%s; this run goes on with eager steps", self.fallback)

    def sync(self):
        torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def totals(self):
        self.sync()
        return float(self.loss_sum), int(self.correct)
