"""Which of a pack's runs train fused (`fused_group.FusedGroup`), and when.

Runs that asked for it (`Run.fuse`, the trial's `fuse` setting) and share a `fusion_key` (the same
architecture, batch size, epoch length, SGD settings, label smoothing, amp, memory format, device
and graph setting) form a group at an epoch's start and train the epoch as one step per tick. At
the epoch's end the group writes each member back and the pack lets every member close its epoch
alone (evaluation, callbacks, checkpoints; a member that finishes, stops early or fails leaves
there). At the next tick the members at an epoch's start form the group again; the same members
in the same order keep their group and its captured graphs.

A run at an epoch's start waits while another run of its key is in the middle of an epoch, so
that it joins at the next boundary (a slot idle for at most an epoch); a lone run trains alone.
"""

import time

import torch

from layerlth.data.batches import batched
from layerlth.training.fused_group import FusedGroup
from layerlth.training.fused_net import fusable


def fusion_key(run):
    """What members of one group share, or None for a run that never fuses."""
    if not run.fuse or run.reduce is not None or getattr(run.stepper, "runner", run.model) is not run.model:
        return None
    if not fusable(run.model):
        return None
    recipe, param = run.recipe, next(run.model.parameters())
    return (run.fuse_tag, run.model.fc.out_features, run.model.conv1.in_channels, recipe.batch_size,
            run.data.train_size, run.steps_in_epoch, recipe.momentum, recipe.nesterov, recipe.weight_decay,
            recipe.norm_weight_decay, recipe.label_smoothing, run.amp, run.memory_format, str(param.device),
            param.dtype, run.graphed)


class Fusion:
    def __init__(self):
        self.groups = []  # FusedGroup, with `in_epoch` set while an epoch is being trained

    def tick(self, runs):
        """Step the groups (forming them where they can be formed); the runs handled this tick:
        stepped in a group, or waiting for one. The others the pack steps on their own."""
        handled = set()
        for group in [g for g in self.groups if g.in_epoch]:
            if self._step(group):
                handled.update(map(id, group.runs))
        keys = {id(run): fusion_key(run) for run in runs}
        busy = {keys[id(r)] for r in runs if keys[id(r)] is not None and not r.at_epoch_start and not r.done}
        ready = {}
        for run in runs:
            if keys[id(run)] is not None and run.at_epoch_start and id(run) not in handled:
                ready.setdefault(keys[id(run)], []).append(run)
        for key, members in ready.items():
            if key in busy:
                handled.update(map(id, members))  # they join at the next epoch boundary
            elif len(members) > 1:
                group = self._form(members)
                if self._step(group):
                    handled.update(map(id, members))
        self.groups = [g for g in self.groups if all(any(r is m for m in runs) for r in g.runs)]
        return handled

    def _form(self, members):
        """The group of `members`: the same members' group reloaded, or a new one."""
        group = next((g for g in self.groups if len(g.runs) == len(members)
                      and all(a is b for a, b in zip(g.runs, members))), None)
        if group is None:
            group = FusedGroup(members, graphed=members[0].graphed)
            self.groups = [g for g in self.groups if not any(r is m for r in g.runs for m in members)]
            self.groups.append(group)
        else:
            group.reload()
        for i, run in enumerate(members):
            run.fused_group_size = max(run.fused_group_size, len(members))
            run.ghost_blocks, run.fused_graphed = group.ghosts[i], group.graphed
            run.started = time.perf_counter()  # its epoch's time starts with the group's
        group.start_epoch()
        group.in_epoch = True
        group.plans = self._plans(members)
        return group

    @staticmethod
    def _plans(members):
        """The members' batch plans when one set of ops can make all their batches (the same images
        held once on the device: `data.batches.batched`); the group then makes them, and the
        members' own iterators are left empty. None: each member makes its own."""
        made = [getattr(run, "epoch_batches", None) for run in members]
        if not all(hasattr(b, "plan") for b in made) or not all(made[0].shares_making_with(b) for b in made):
            return None
        plans = [b.plan() for b in made]
        for run in members:
            run.batches = iter(())
        return plans

    @staticmethod
    def _step(group):
        """One tick of the group: each member's next batch in one fused step; False at the
        epoch's end (the group has written its members back)."""
        if group.plans is not None:
            steps = [next(plan, None) for plan in group.plans]
            batches = None if any(s is None for s in steps) else batched([r.epoch_batches for r in group.runs], steps)
            ended = [s is None for s in steps]
        else:
            taken = [run.take_batch() for run in group.runs]
            ended = [b is None for b in taken]
            batches = None if any(ended) else (torch.stack([b[0] for b in taken]), torch.stack([b[1] for b in taken]))
        if any(ended):
            if not all(ended):
                raise RuntimeError("fused members ran out of batches at different steps")
            group.finish_epoch()
            group.in_epoch = False
            return False
        xs, y = batches
        xs = xs.view(len(group.runs), -1, *xs.shape[-3:])
        for i, run in enumerate(group.runs):
            if run.own_peak_bytes is None and xs.is_cuda:
                run.measure_alone((xs[i], y[i]))
        group.set_lrs([run.next_lr() for run in group.runs])
        group.step(xs, y)
        for i, run in enumerate(group.runs):
            run.count((None, y[i]))
        return True
