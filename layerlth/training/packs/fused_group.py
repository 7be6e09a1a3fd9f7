"""Several runs of one architecture trained as one fused step (`fused_net.FusedNet`).

A `FusedGroup` takes k `Run`s at the start of an epoch, all with the same batch size, epoch length
and SGD settings (`fusion.fusion_key`), and steps them together: each tick it takes every member's
own next batch (its own order and augmentation), runs one forward, one backward and one SGD step
for all of them, and keeps each member's loss and correct sums. SGD is torch.optim.SGD's arithmetic
(weight decay, momentum, dampening 0, Nesterov) over the stacked tensors, with a per-member
learning-rate tensor: members may be at different epochs of different schedules. A member's
momentum starts at zero where it had none, which makes the first update SGD's `buf = d_p` exactly.

At the epoch's end `write_back` puts each member's weights, BatchNorm statistics and momentum into
its own model and optimizer, so evaluation, callbacks and checkpoints see a member exactly as if
it had trained alone; the pack then lets each member close its epoch on its own. When the same
members start their next epoch together, `reload` copies their state in place (a callback may
have changed it) and the captured graphs stay valid.

On CUDA with `graphed`, the step and the evaluation are captured by `graphs.Graphs`, the engine's
one capture mechanism (as `steps.GraphedStep` for one run): one graph per batch shape (full and
partial) after `WARMUP_STEPS` eager steps at that shape, on the group's own stream, in one memory
pool; the inputs recorded on that stream; the learning rates device tensors refilled on it, in
order with the replays. A capture that fails leaves the group eager (`fallback`).
"""

import torch
import torch.nn.functional as F

from layerlth.training.graphs import Graphs
from layerlth.training.packs.fused_net import FusedNet
from layerlth.training.steps import autocast, widened


class FusedGroup:
    def __init__(self, runs, graphed=False):
        self.runs, self.k = list(runs), len(runs)
        first = self.runs[0]
        self.memory_format, self.amp = first.memory_format, first.amp
        self.smoothing, recipe = first.recipe.label_smoothing, first.recipe
        self.momentum, self.nesterov = recipe.momentum, recipe.nesterov
        self.net = FusedNet([r.model for r in self.runs], self.memory_format)
        self.names = list(self.net.params)
        self.device = next(iter(self.net.params.values())).device
        self.decay = self._weight_decays()
        dtype = next(iter(self.net.params.values())).dtype
        self.lr = torch.zeros(self.k, dtype=dtype, device=self.device)
        self.lr_views = {name: self._lr_view(name) for name in self.names}
        self.momentum_buffers = {name: torch.zeros_like(p) for name, p in self.net.params.items()}
        self._load_momentum()
        self.loss_sum = torch.zeros(self.k, device=self.device)
        self.correct = torch.zeros(self.k, device=self.device, dtype=torch.long)
        self.graphs = Graphs(self.device, "this fused group") if graphed and self.device.type == "cuda" else None
        self.eval_sums = [torch.zeros(self.k, dtype=torch.float64, device=self.device) for _ in range(3)]
        self.last_lrs, self.parts = None, None
        self.in_epoch, self.plans = False, None  # plans: the leaders' batch plans, when the group makes them
        self.members, self.followers = list(self.runs), []  # followers: (run, its leader), no slot

    @property
    def ghosts(self):
        return self.net.ghosts

    @property
    def graphed(self):
        """Its steps are graph replays (no capture has failed)."""
        return self.graphs is not None and self.graphs.graphed

    @property
    def fallback(self):
        return None if self.graphs is None else self.graphs.fallback

    # ---------------------------------------------------------------- state
    def _weight_decays(self):
        """Each stacked leaf's weight decay, from the optimizer group that holds it in a member
        that has it (a recipe may spare normalisation layers)."""
        decays = {}
        for name in self.names:
            i = next(i for i, own in enumerate(self.net.member_names[name]) if own)
            run = self.runs[i]
            param = run.model.get_parameter(name)
            decays[name] = next(g["weight_decay"] for g in run.optimizer.param_groups
                                if any(p is param for p in g["params"]))
        return decays

    def _lr_view(self, name):
        """Each member's lr over all of its elements of one stacked leaf, in the leaf's shape and
        layout (so SGD runs as same-shape multi-tensor ops); persistent: a captured step reads it,
        `set_lrs` refills it."""
        return torch.empty_like(self.net.params[name], requires_grad=False)

    def set_lrs(self, values):
        """The members' learning rates for the next step (refilled only when they change)."""
        if values == self.last_lrs:
            return
        self.last_lrs = list(values)
        self._on_stream(lambda: self._fill_lrs(values))

    @torch.no_grad()
    def _fill_lrs(self, values):
        """On the group's stream, so a replay still queued reads the lrs of its own step; filled
        from host floats (no host-to-device copy, which would wait for the stream)."""
        for i, value in enumerate(values):
            self.lr[i].fill_(value)
        for name, view in self.lr_views.items():
            per = [1] * (view.dim() - 1)
            if name.startswith("fc."):
                view.copy_(self.lr.view(self.k, *per).expand_as(view))
            else:
                view.copy_(self.lr.repeat_interleave(view.shape[0] // self.k).view(-1, *per).expand_as(view))

    def _load_momentum(self):
        for i, run in enumerate(self.runs):
            for name, buffer in self.momentum_buffers.items():
                own = self.net.member_names[name][i]
                if own is None:
                    continue
                state = run.optimizer.state.get(run.model.get_parameter(own), {})
                mine = self.net.member_view(name, buffer, i)
                mine.copy_(state["momentum_buffer"]) if state.get("momentum_buffer") is not None else mine.zero_()

    @torch.no_grad()
    def reload(self):
        """The members' current state into the stacked tensors, in place (graphs stay valid)."""
        for i, run in enumerate(self.runs):
            own_state = run.model.state_dict()
            for name, stacked in (*self.net.params.items(), *self.net.buffers.items()):
                own = self.net.member_names[name][i]
                if own is not None:
                    self.net.member_view(name, stacked, i).copy_(own_state[own])
        self._load_momentum()

    @torch.no_grad()
    def write_back(self):
        """Each member's weights, BN statistics and momentum into its own net and optimizer, in
        place (a graph the member captured alone keeps pointing at them)."""
        self.sync()
        for i, run in enumerate(self.runs):
            own_state = run.model.state_dict()  # tensors sharing the model's storage
            for own, tensor in self.net.member_state(i).items():
                own_state[own].copy_(tensor)
            for name, buffer in self.momentum_buffers.items():
                own = self.net.member_names[name][i]
                if own is not None:
                    set_momentum(run.optimizer, run.model.get_parameter(own), self.net.member_view(name, buffer, i))

    def step_apart(self, batches, lrs):
        """One step the members cannot take stacked (their batches differ in size): each member's
        state written back, one eager step of its own on its own batch at its lr, and its state
        read back into the stacked tensors. Each member computes exactly what it computes alone."""
        self.write_back()
        for i, (run, batch, lr) in enumerate(zip(self.runs, batches, lrs)):
            run.step_alone(batch, lr, into=(self.loss_sum[i], self.correct[i]))
        self.reload()

    def finish_epoch(self):
        """The epoch's end: each member written back, its training sums read (the time its training
        ended taken then, before evaluation, as a run alone times it), evaluated (all at once when
        their test images are the same), and its sums delivered for its run to close the epoch."""
        import time

        self.write_back()
        train = self._on_stream(lambda: torch.stack([self.loss_sum.double(), self.correct.double()]))
        self.sync()
        train = train.tolist()  # reading waits for the training: it is done
        trained_at = time.perf_counter()
        tests = [run.test for run in self.runs]
        fused_test = all(hasattr(t, "shares_making_with") and tests[0].shares_making_with(t) for t in tests)
        test = self._evaluate(tests[0]) if fused_test else None
        for i, run in enumerate(self.runs):
            run.deliver((train[0][i], int(train[1][i])), test and (test[0][i] / test[2][i], test[1][i] / test[2][i]),
                        trained_at)

    @torch.no_grad()
    def _evaluate(self, test):
        """Every member's (test loss sum, correct count, image count), read once: one fused forward
        per test batch (each member's channels see the same images), in eval mode; on CUDA with
        graphs, a replay per batch (one graph per batch shape)."""
        self._on_stream(lambda: [t.zero_() for t in self.eval_sums])
        for x, y in test:
            if self.graphs is None:
                self._eval_batch(x, y)
            else:
                self.graphs(self._eval_batch, x, y, warmup=1)
        self.sync()
        return torch.stack(self.eval_sums).tolist()

    def _eval_batch(self, x, y):
        k, sums = self.k, self.eval_sums
        x = x.repeat(1, k, 1, 1).contiguous(memory_format=self.memory_format)
        with autocast(x.device, self.amp):
            logits = self.net.forward(x, training=False)
        per_image = F.cross_entropy(widened(logits).flatten(0, 1), y.repeat(k), reduction="none")
        sums[0] += per_image.view(k, -1).sum(1, dtype=torch.float64)
        sums[1] += (logits.argmax(-1) == y).sum(1)
        sums[2] += len(y)

    def start_epoch(self, members, followers, plans):
        """An epoch of `members`: the leaders (its runs) and their `followers` ((run, leader): each
        trains exactly as its leader, without a slot); `plans`: the leaders' batch plans when the
        group makes their batches, else None."""
        self.members, self.followers, self.plans, self.in_epoch = list(members), followers, plans, True
        self._on_stream(lambda: (self.loss_sum.zero_(), self.correct.zero_()))

    def end_epoch(self):
        self.in_epoch = False

    # ---------------------------------------------------------------- the step
    def step(self, xs, y):
        """One step of every member on its own batch: inputs (k, N, C, H, W), labels (k, N)."""
        x = xs.transpose(0, 1).flatten(1, 2).contiguous(memory_format=self.memory_format)  # (N, k x C, H, W)
        if self.graphs is None:
            self._train(x, y)
        else:
            self.graphs(self._train, x, y)

    def _train(self, x, y):
        k, n = y.shape
        params = [self.net.params[name] for name in self.names]
        with autocast(x.device, self.amp):
            logits = self.net.forward(x)
        losses = F.cross_entropy(widened(logits).flatten(0, 1), y.flatten(), reduction="none",
                                 label_smoothing=self.smoothing).view(k, n).mean(1)
        grads = torch.autograd.grad(losses.sum(), params)  # member i's leaves reach only loss i
        self._sgd(params, grads)
        self.net.count_tracked()
        self.loss_sum += losses.detach() * n
        self.correct += (logits.argmax(-1) == y).sum(1)

    def _sgd_parts(self):
        """The leaves by weight decay, each part with persistent update buffers and every member's
        views of its leaves and of its update (made once: views are ops too)."""
        parts = []
        for decay in sorted(set(self.decay.values())):
            names = [name for name in self.names if self.decay[name] == decay]
            params = [self.net.params[name] for name in names]
            d_p = [torch.zeros_like(p, requires_grad=False) for p in params]
            bufs = [self.momentum_buffers[name] for name in names]
            step = d_p if self.nesterov else bufs
            views = [([self.net.member_view(n, p, i) for n, p in zip(names, params)],
                      [self.net.member_view(n, t, i) for n, t in zip(names, step)]) for i in range(self.k)]
            parts.append((decay, [self.names.index(n) for n in names], params, d_p, bufs, step, views,
                          [self.lr_views[n] for n in names]))
        return parts

    @torch.no_grad()
    def _sgd(self, params, grads):
        """torch.optim.SGD's update with each member's lr, as multi-tensor ops over all leaves
        (a few calls per step, not a kernel per leaf)."""
        self.parts = self.parts or self._sgd_parts()
        for decay, index, p, d_p, bufs, step, views, lrs in self.parts:
            torch._foreach_copy_(d_p, [grads[n] for n in index])
            if decay:
                torch._foreach_add_(d_p, p, alpha=decay)
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_add_(bufs, d_p)
            if self.nesterov:
                torch._foreach_add_(d_p, bufs, alpha=self.momentum)
            if self.graphs is not None:  # a graphed step (or its eager warm-up) reads the lr from device tensors
                torch._foreach_sub_(p, torch._foreach_mul(step, lrs))
                continue
            for (mine, update), lr in zip(views, self.last_lrs):  # SGD's own p + (-lr) d_p: its rounding
                torch._foreach_add_(mine, update, alpha=-lr)

    def _on_stream(self, work):
        """`work()` where the group's steps run: its graphs' stream, after the caller's work."""
        if self.graphs is None:
            return work()
        return self.graphs.run(work)

    def sync(self):
        if self.graphs is not None:
            self.graphs.sync()


def set_momentum(optimizer, param, value):
    """`param`'s momentum buffer in `optimizer` set to `value`: copied into the buffer it has (a
    captured step reads that tensor), or a copy where it has none yet."""
    state = optimizer.state[param]
    if state.get("momentum_buffer") is not None:
        state["momentum_buffer"].copy_(value)
    else:
        state["momentum_buffer"] = value.clone()
