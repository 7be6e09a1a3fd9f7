"""The one CUDA-graph mechanism of the engine: a computation warmed up, captured per input shape and
replayed on its own side stream, with the stream rules in one place. The solo graphed step
(`steps.GraphedStep`), a fused pack's step and its fused evaluation (`packs.fused_group`) all use it.

The rules (PyTorch's torch.cuda.graphs notes, "Whole network capture" and "Usage with multiple
streams"), each kept here:
- every call waits for the caller's stream first: its inputs (a batch made there) are ready;
- each input is `record_stream`-ed on the side stream, so the caching allocator does not hand its
  memory to the next batch while a queued copy or eager step still reads it;
- a write that replays read (a tensor learning rate) runs on the side stream (`write`), after the
  replays queued before it and before the ones after it; written on the caller's stream it could
  reach a replay still queued for the step before;
- every graph of one `Graphs` captures into one memory pool (`graph_pool_handle`): its graphs replay
  on one stream, one at a time, and what must outlive a replay (gradients, the sums, the static
  inputs) is allocated outside the capture or lives as long as the pool, so sharing is safe; a
  capture that fails is dropped with its graph, and with the pool while no graph holds it;
- a capture that fails (an op a graph cannot hold, say a host sync in a user's model) leaves the
  computation running eagerly on the same stream from then on, with `fallback`: why, in one line.
"""

import logging

import torch

WARMUP_STEPS = 3  # eager calls before the first capture (PyTorch's recipe warms up on a side stream)
log = logging.getLogger("layerlth")


def capture_failure(error):
    """Why a capture failed, in one line: a row's `graph_fallback` and the warning's text."""
    return f"CUDA graph capture failed ({type(error).__name__}: {str(error).splitlines()[0][:200]})"


class Graphs:
    """Computations run on `device`'s side stream `stream`, each `compute(*inputs)` eagerly for its
    first `warmup` calls at a shape (cuDNN's autotuner measures there, which a capture could not
    hold), then as the replay of a graph captured for that shape. `what` names the owner in the
    fallback warning ("this run", "this fused group")."""

    def __init__(self, device, what="this run", warmup=WARMUP_STEPS, before_capture=None):
        self.device, self.what, self.warmup = torch.device(device), what, warmup
        self.stream = torch.cuda.Stream(self.device)
        self.graphs, self.calls, self.pool, self.fallback = {}, {}, None, None
        self.before_capture = before_capture  # called before each capture (the solo step's gradients)

    @property
    def graphed(self):
        """Replays are (still) possible: no capture has failed."""
        return self.fallback is None

    def __call__(self, compute, *inputs, eager=False, one_shape=False, warmup=None):
        """`compute(*inputs)` on the side stream: eagerly when `eager`, in its warm-up (`warmup`
        calls at this shape, default the mechanism's) or after a failed capture, else replayed.
        `one_shape`: a new shape's graph replaces this computation's others (progressive resizing
        never goes back). Results live in the tensors it writes."""
        self._follow(inputs)
        with torch.cuda.stream(self.stream):
            key = (compute.__qualname__, *((tuple(t.shape), t.dtype) for t in inputs))
            seen = self.calls[key] = self.calls.get(key, 0) + (not eager)
            entry = self.graphs.get(key)
            if entry is None and not eager and self.fallback is None and seen > (self.warmup if warmup is None else warmup):
                entry = self._capture(key, compute, inputs, one_shape)
            if entry is None:
                compute(*inputs)
                return
            graph, statics = entry
            for static, tensor in zip(statics, inputs):
                static.copy_(tensor)
            graph.replay()

    def write(self, change):
        """`change()` (an in-place write of a tensor the graphs read, an lr) ordered among the replays."""
        self.run(change)

    def run(self, work):
        """`work()` on the side stream after the caller's work (zeroing sums, say)."""
        self._follow(())
        with torch.cuda.stream(self.stream):
            return work()

    def _follow(self, inputs):
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        for tensor in inputs:
            tensor.record_stream(self.stream)

    def _capture(self, key, compute, inputs, one_shape):
        """The graph of `compute` for these shapes, or None after a failed capture."""
        torch.cuda.synchronize(self.device)
        if one_shape:  # the old graph's memory goes before the new one is captured
            self.graphs = {k: v for k, v in self.graphs.items() if k[0] != key[0]}
            if not self.graphs:  # a pool no graph holds cannot take a capture again (PyTorch asserts): a new one
                self.pool = None
        statics = [t.clone() for t in inputs]
        if self.before_capture is not None:
            self.before_capture()
        self.pool = self.pool or torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream):
                compute(*statics)
        except RuntimeError as error:
            del graph
            self._give_up(error)
            return None
        self.graphs[key] = graph, statics
        return self.graphs[key]

    def _give_up(self, error):
        """Eager from now on: the failed graph goes, and every other graph and the pool with it."""
        torch.cuda.synchronize(self.device)
        self.graphs, self.pool = {}, None
        self.fallback = capture_failure(error)
        log.warning("%s; %s goes on eagerly", self.fallback, self.what)

    def sync(self):
        """The caller's stream waits for everything queued here (the sums are then readable)."""
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
