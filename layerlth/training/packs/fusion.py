"""Which of a pack's runs train fused (`fused_group.FusedGroup`), and when.

Runs that asked for it (`RunTerms.fuse`, the trial's `fuse` setting) and share a `fusion_key` (the same
architecture, batch size, epoch length, SGD settings, label smoothing, amp, memory format, device
and graph setting) form a group at an epoch's start and train the epoch as one step per tick. At
the epoch's end the group writes each member back and the pack lets every member close its epoch
alone (evaluation, callbacks, checkpoints; a member that finishes, stops early or fails leaves
there). At the next tick the members at an epoch's start form the group again; the same members
in the same order keep their group and its captured graphs.

A run at an epoch's start waits while another run of its key is in the middle of an epoch, so
that it joins at the next boundary (a slot idle for at most an epoch); a lone run trains alone.

Runs that would compute the same thing (the same seed and so data order, weights, momentum, recipe
and epochs: say two criteria that removed the same blocks of one initialisation) train once: one
leads, in the group; each other follows it, taking a copy of its weights, momentum and sums at
every epoch's end, and closes the epoch with its own callbacks and checkpoints. Both rows say so
(`training_shared_with`).

Members whose batches of a step differ in size (a streamed, GPU-decoded batch drops the images
that do not decode) cannot be stacked: that step, each member takes its own eager step on its own
batch (`FusedGroup.step_apart`), exactly as it would alone, and the group goes on fused at the next.
"""

import torch

from layerlth.data.batches import batched
from layerlth.training.packs.fused_group import FusedGroup, set_momentum
from layerlth.training.packs.fused_net import fusable


def fusion_key(run):
    """What members of one group share, or None for a run that never fuses."""
    if not run.terms.fuse or run.reduce is not None or getattr(run.stepper, "runner", run.model) is not run.model:
        return None
    if not fusable(run.model):
        return None
    recipe, param = run.recipe, next(run.model.parameters())
    return (run.terms.fuse_tag, run.model.fc.out_features, run.model.conv1.in_channels, recipe.batch_size,
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
            if self._guarded_step(group):
                handled.update(map(id, group.members))
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
                group = self._guarded_form(members)
                if group is not None and self._guarded_step(group):
                    handled.update(map(id, members))
        self.groups = [g for g in self.groups if all(any(r is m for m in runs) for r in g.members)]
        return handled

    def _form(self, members):
        """The group of `members`: the same leaders' group reloaded, or a new one; followers of a
        leader join it without a slot."""
        leaders, followers = [], []
        for run in members:
            leader = next((lead for lead in leaders if same_computation(lead, run)), None)
            (followers.append((run, leader)) if leader else leaders.append(run))
        group = next((g for g in self.groups if len(g.runs) == len(leaders)
                      and all(a is b for a, b in zip(g.runs, leaders))), None)
        if group is None:
            group = FusedGroup(leaders, graphed=leaders[0].graphed)
            self.groups = [g for g in self.groups if not any(r is m for r in g.members for m in members)]
            self.groups.append(group)
        else:
            group.reload()
        ghosts = dict(zip(map(id, leaders), group.ghosts))
        ghosts |= {id(run): ghosts[id(leader)] for run, leader in followers}
        for run, leader in followers:
            run.hand_over_batches()  # it takes no step of its own
            run.report.shares_training_with(leader.terms.label)
            leader.report.shares_training_with(run.terms.label)
        for run in members:
            run.report.fused(len(members), ghosts[id(run)], group.graphed)
            run.restart_clock()  # its epoch's time starts with the group's
        group.start_epoch(members, followers, self._plans(leaders))
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
            run.hand_over_batches()
        return plans

    def _guarded_form(self, members):
        try:
            return self._form(members)
        except Exception as error:  # noqa: BLE001 - the members' failure, not the pack's
            self._fail(members, error)
            return None

    def _guarded_step(self, group):
        """`_step`; an error in the fused step (say, out of memory) is every member's: each fails
        with it at its next step, as it would alone, and the group is dropped."""
        try:
            return self._step(group)
        except Exception as error:  # noqa: BLE001
            self._fail(group.members, error)
            self.groups = [g for g in self.groups if g is not group]
            return False

    @staticmethod
    def _fail(members, error):
        for run in members:
            run.fail(error)

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
            if not any(ended) and len({len(b[1]) for b in taken}) > 1:
                return Fusion._step_apart(group, taken)
            batches = None if any(ended) else (torch.stack([b[0] for b in taken]), torch.stack([b[1] for b in taken]))
        if any(ended):
            if not all(ended):
                raise RuntimeError("fused members ran out of batches at different steps")
            group.finish_epoch()
            for run in group.members:  # a capture that failed this epoch: it trained eagerly
                if not group.graphed:
                    run.report.fused_eagerly()
            for run, leader in group.followers:
                mirror(run, leader)
            group.end_epoch()
            return False
        xs, y = batches
        xs = xs.view(len(group.runs), -1, *xs.shape[-3:])
        for i, run in enumerate(group.runs):
            if run.report.own_peak_bytes is None and xs.is_cuda:
                run.measure_alone((xs[i], y[i]))
        group.set_lrs([run.next_lr() for run in group.runs])
        group.step(xs, y)
        for i, run in enumerate(group.runs):
            run.count((None, y[i]))
        Fusion._followers_step(group, y)
        return True

    @staticmethod
    def _step_apart(group, taken):
        """A step whose batches differ in size: each member steps alone (`FusedGroup.step_apart`);
        a follower counts its leader's batch, as in a fused step."""
        group.step_apart(taken, [run.next_lr() for run in group.runs])
        Fusion._followers_step(group, [labels for _, labels in taken])
        return True

    @staticmethod
    def _followers_step(group, labels):
        """Each follower moves one step with its leader (`labels[i]`: leader i's batch labels): its
        lr schedule, its images and, where its leader has one, its peak memory."""
        for run, leader in group.followers:
            run.next_lr()
            run.count((None, labels[group.runs.index(leader)]))
            run.report.peak(leader.report.own_peak_bytes)


def same_computation(a, b):
    """Whether runs `a` and `b` (of one fusion key) would train exactly alike from here: the same
    seed, epochs, step and recipe, the same images and batches, and equal weights, buffers and
    momentum."""
    if (a.seed, a.epoch, a.last, a.step_index, a.recipe) != (b.seed, b.epoch, b.last, b.step_index, b.recipe):
        return False
    same_data = (a.data is b.data or (hasattr(a.epoch_batches, "shares_making_with")
                                      and a.epoch_batches.shares_making_with(b.epoch_batches)
                                      and a.test.shares_making_with(b.test)))
    mine, theirs = a.model.state_dict(), b.model.state_dict()
    if not same_data or mine.keys() != theirs.keys() or any(
            mine[k].shape != theirs[k].shape or not torch.equal(mine[k], theirs[k]) for k in mine):
        return False
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        m, n = (run.optimizer.state.get(t, {}).get("momentum_buffer") for run, t in ((a, p), (b, q)))
        if (m is None) != (n is None) or (m is not None and not torch.equal(m, n)):
            return False
    return True


@torch.no_grad()
def mirror(follower, leader):
    """The leader's epoch into its follower: weights, buffers, momentum and the epoch's sums."""
    own = follower.model.state_dict()
    for name, tensor in leader.model.state_dict().items():
        own[name].copy_(tensor)
    for p, q in zip(follower.model.parameters(), leader.model.parameters()):
        buffer = leader.optimizer.state.get(q, {}).get("momentum_buffer")
        if buffer is not None:
            set_momentum(follower.optimizer, p, buffer)
    follower.mirror(leader)
