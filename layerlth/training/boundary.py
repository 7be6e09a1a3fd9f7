"""What a `loop.Run` is given and what is recorded about it: its typed boundary.

`RunTerms` is the one frozen value a run gets at construction for whoever trains it beside others
or meters it: its label, whether and with whom a pack may fuse it, how its energy is metered, and
the data-parallel setting. `RunReport` holds what those others record about the run while it
trains (the training path, a fused group, shared training, peak memory, energy); every field is
written by a method here, and the trial turns the report into its row's columns. The loop's own
state (model, optimizer, data, recipe, stepper, callbacks, history, epoch) stays in the run.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EnergyTerms:
    """How a pack meters a run's energy: the codecarbon country, the share of the GPU it is charged
    (NVML reads the whole GPU), whether emissions are on, and forward MACs per image (a pack splits
    its measured energy among its runs by images x MACs)."""
    country: str = "USA"
    gpu_share: float = 1.0
    enabled: bool = False
    macs: int = 1


@dataclass(frozen=True)
class RunTerms:
    """`label` names the run to others (the trial's hash); `fuse`: a pack may train it fused with
    runs of the same `fuse_tag` (its architecture); `energy`: how it is metered; `parallel`: the
    data-parallel setting (`parallel.Parallel`) when several processes train it, else None."""
    label: str = "run"
    fuse: bool = False
    fuse_tag: object = None
    energy: EnergyTerms = field(default_factory=EnergyTerms)
    parallel: object = None


class RunReport:
    """What was recorded about a run while it trained. Written only through these methods."""

    def __init__(self):
        self.fused_group_size, self.ghost_blocks, self.fused_graphed = 1, 0, False
        self.shared_with = []  # labels of the runs whose identical training was done once with this one
        self.peak_members = 1  # the most runs this one shared its process with, itself included
        self.own_peak_bytes = None  # CUDA: the peak of one of its own steps plus the tensors it keeps
        self.energy = None  # its share of the energy so far (`measure.emissions.EnergySplit`)

    def fused(self, group_size, ghosts, graphed):
        """It trains an epoch in a fused group of `group_size` runs (the largest is kept)."""
        self.fused_group_size = max(self.fused_group_size, group_size)
        self.ghost_blocks, self.fused_graphed = ghosts, graphed

    def fused_eagerly(self):
        """Its fused group's capture failed: the group trained eagerly."""
        self.fused_graphed = False

    def shares_training_with(self, label):
        self.shared_with = sorted({*self.shared_with, label})

    def shares_process(self, members):
        self.peak_members = max(self.peak_members, members)

    def peak(self, nbytes):
        """Its own CUDA peak, where none was measured yet."""
        if self.own_peak_bytes is None:
            self.own_peak_bytes = nbytes

    def metered(self, energy):
        self.energy = energy
