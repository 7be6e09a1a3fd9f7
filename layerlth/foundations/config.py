"""A trial's hyper-parameters as one dataclass: help text beside each field, CLI flags derived
from it, and a stable hash of the non-default values that names the trial's results."""

import argparse
import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields

from layerlth.foundations.arch_names import identity
from layerlth.foundations.dataset_identity import is_stream, stream_identity
from layerlth.foundations.field_checks import checked_values, field_type, hinted, raise_all
from layerlth.foundations.storage import Storage

# the values of the engine's switches (`training.fastpath` checks them where they are used)
COMPILE_CHOICES = GRAPH_CHOICES = FUSE_CHOICES = ("auto", True, False)


def _f(default, help, **kwargs):
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass(frozen=True)
class TrialConfig:
    """One trial's options: what to build, score, remove, train and measure. Frozen.

    Each field is a trial option: a key of a grid and a flag of `layerlth ticket` (`--rewind`,
    `-p`), documented by its help text and default. `TrialConfig.from_dict` checks each value's
    type and range; `layerlth.run_trial` takes a `TrialConfig` or such a dict. `hash()` names the
    trial's results from its non-default values, leaving out the fields that change neither what
    is computed nor its result (such as where files live, the device, compile, early stopping);
    `dense_key()` names the dense run its tickets share.
    """

    kind: str = _f("at_init", "dense, at_init (Algorithm 2), after_training (Algorithm 1) or filter (Table 3)")
    arch: str = _f("resnet20", "network: resnet20/32/44/56/110 or cifar_resnet{6n+2}, a torchvision family (resnet50, convnext_tiny, swin_t, vit_b_16, ...), vit_cifar, or package.module:callable (layerlth inspect --help lists all)")
    dataset: str = _f("digits", "cifar10, cifar100, digits, synthetic, a path to an .npz, or a directory or s3:// prefix of images that stream (train/<class>/*, val/<class>/*, or train-*.tar and val-*.tar shards)")
    data_dir: str | None = _f(None, "where CIFAR is cached (default $LAYERLTH_DATA or ~/.cache/layerlth/data)", hashed=False, dense=False)
    shortcut: str = _f("B", "CIFAR ResNet shortcut: B = 1x1 projection (paper's MACs), A = parameter-free")
    criterion: str = _f("grasp", "block score: grasp, snip, synflow (at init); hrank, expectabs, pls, kl, cka, l1 (trained); random", dense=False)
    p: int = _f(0, "number of blocks to remove (a filter ticket matches that layer ticket's filters); 0 = dense", dense=False)
    rounds: int = _f(1, "blocks removed in k rounds, each re-scoring the shallower net (1..p; 1 = one shot, the paper's)", dense=False)
    rewind: int = _f(0, "after_training: epoch whose dense weights the ticket restarts from, lr schedule replayed from there", dense=False)
    reinit: bool = _f(False, "after_training: random re-init of the ticket instead of rewinding (Liu et al. 2019)", dense=False)
    rewind_epochs: tuple = _f((), "epochs whose dense weights are kept for rewinding (default 0 and 1/8, 1/4, 3/8 of the epochs)", nargs="*", type=int)
    score_batches: int = _f(10, "training batches the criterion sees", dense=False)
    score_batch_size: int = _f(128, "images per scoring batch", dense=False)
    aggregate: str = _f("sum", "per-weight scores to a block score: sum or mean", dense=False)
    pls_components: int = _f(4, "pls: components of each block's PLS (4, as the authors use)", dense=False)
    keep_first: bool = _f(True, "never remove the network's first block", dense=False)
    min_per_stage: int = _f(2, "blocks each stage keeps at least, counting its first", dense=False)
    recipe: str = _f("paper", "training preset: paper (lr 0.01, Nesterov, 200 epochs), he2016 (lr 0.1, 164 epochs), imagenet (torchvision's ResNet-50: 90 epochs, lr 0.1 x batch/256, / 10 at 30, 60, 80) or imagenet_fast (FFCV's 16-epoch ResNet-50: cyclic lr 1.7 x batch/4096, label smoothing, crops 160 then 192 px)")
    epochs: int | None = _f(None, "override the recipe's epochs (milestones scale with it)")
    batch_size: int | None = _f(None, "override the recipe's batch size")
    lr: float | None = _f(None, "override the recipe's learning rate")
    seed: int = _f(0, "seed for initialisation, batch order, augmentation and random scores")
    train_subset: int | None = _f(None, "use only the first N training images (quick checks)")
    image_size: int | None = _f(None, "a dataset that streams (a directory): side of the square crops it trains and is evaluated on (default 224)")
    workers: int = _f(1, "data-parallel processes training this one trial (Ray Train, one GPU each, across nodes); the recipe's batch is the global one, split over them; > 1 needs a dataset that streams. BatchNorm keeps per-worker statistics")
    # how many processes decode a streamed dataset's images: how fast, not what (the batches do not
    # depend on it), so neither in the hash nor the dense key
    data_workers: int | None = _f(None, "a dataset that streams: DataLoader processes decoding its images (default: one per core but one, at most 8)", hashed=False, dense=False)
    # like data_workers: where the JPEGs are decoded changes how fast, and the pixels only by the two
    # resizers' rounding (layerlth.data.device_decode), so neither in the hash nor the dense key
    data_decode: str = _f("cpu", "a dataset that streams: decode its JPEGs in DataLoader processes on the CPU (cpu) or on the GPU with nvJPEG (cuda; needs a CUDA device)", hashed=False, dense=False, choices=("cpu", "cuda"))
    device: str = _f("auto", "auto (cuda when available), cpu, cuda, cuda:1, ...", hashed=False, dense=False)
    amp: bool = _f(True, "bf16 autocast where it pays: GPUs with native bf16, CPUs with AMX-BF16 (fp32 elsewhere)")
    channels_last: bool = _f(True, "channels_last memory format on CUDA and on CPUs with AVX-512")
    # not in the hash nor the dense key, like device: it changes how fast the same fp32/bf16 arithmetic
    # runs (and the order of float rounding), not what is computed, so a stored dense run or trial
    # serves compiled and eager trials alike; the row says which it was (compiled, compile_mode)
    compile: bool | str = _f("auto", "torch.compile the network that trains: auto = off (measured no faster on CUDA, where CUDA graphs are the fast path, and costing more than a short CPU trial gains); --compile, --no-compile force it (--compile turns the graphed step off). The row records compiled, compile_mode and compile_seconds (apart from train_seconds). Not in the trial hash or dense key (like device): it changes speed and rounding, not the arithmetic", hashed=False, dense=False, choices=COMPILE_CHOICES)
    # like compile: how fast, not what; the row says which engine trained (graphed, training_path)
    graph: bool | str = _f("auto", "capture each training step as a CUDA graph and replay it: auto = on for CUDA (unless --compile), impossible on a CPU; --graph, --no-graph force it. The row records graphed and training_path. Not in the trial hash or dense key", hashed=False, dense=False, choices=GRAPH_CHOICES)
    # like graph: how fast, not what (each member computes what it computes alone, to float rounding)
    fuse: bool | str = _f("auto", "in a pack (--trials-per-gpu), train members of one CIFAR ResNet architecture and recipe as one fused step (grouped convolutions, one BatchNorm over all members' channels; tickets join through ghost blocks): auto = on only on a device kind where the GPU suite measured it faster (none yet), --fuse, --no-fuse force it. The row records training_path, fused_group_size and ghost_blocks. Not in the trial hash or dense key", hashed=False, dense=False, choices=FUSE_CHOICES)
    country: str = _f("USA", "ISO code of the country whose grid intensity prices the energy", dense=False)
    emissions: bool = _f(True, "track energy and CO2 with codecarbon", dense=False)
    gpu_share: float = _f(1.0, "fraction of the GPU this trial holds; its GPU energy is apportioned by it", hashed=False, dense=False)
    checkpoint_epochs: tuple = _f((), "epochs after which the weights are saved (0 = initial)", nargs="*", type=int, dense=False)
    out_dir: str | None = _f(None, "directory for checkpoints and result.json (none: keep nothing)", hashed=False, dense=False)
    dense_dir: str = _f("results/dense", "where dense runs are stored once and shared by their tickets", hashed=False, dense=False)
    # robustness of the final model (evaluated after training; none of it changes training)
    robustness: tuple = _f((), "evaluate the trained net on: cifar10c, cifar102, fgsm, pgd", nargs="*", type=str, dense=False)
    corruption_source: str = _f("auto", "cifar10c: archive (CIFAR-10-C), generated (corrupt the test set here), auto (archive for cifar10)", dense=False)
    corruption_images: int = _f(1000, "generated corruptions: first N test images (the archive always has all 10,000)", dense=False)
    attack_eps: float = _f(8 / 255, "fgsm/pgd: L-inf budget in [0, 1] pixel units", dense=False)
    pgd_steps: int = _f(10, "pgd: number of steps", dense=False)
    pgd_step_size: float = _f(2 / 255, "pgd: step size in [0, 1] pixel units", dense=False)
    pgd_random_start: bool = _f(True, "pgd: start at a uniform random point of the eps ball", dense=False)
    attack_images: int = _f(1000, "fgsm/pgd: attack the first N test images", dense=False)
    # early stopping of losing tickets (off by default); not in the hash: a stopped trial is redone
    # in full by a grid without it, and one that was not stopped is the same trial
    stop_rungs: tuple = _f((), "stop a ticket whose test accuracy trails its stored dense run's by more than stop_margin at these fractions of training, e.g. 0.25 0.5 0.75 (none: off)", nargs="*", type=float, hashed=False, dense=False)
    stop_margin: float = _f(2.0, "early stopping: test-accuracy points a ticket may trail its dense run at a rung", hashed=False, dense=False)

    def non_defaults(self, names=None):
        return {
            f.name: getattr(self, f.name) for f in fields(self)
            if getattr(self, f.name) != f.default and (names is None or f.name in names)
        }

    def hash(self):
        """Stable name of the trial: defaults are left out, so adding a field renames nothing;
        so are the fields that only say where files live."""
        return _digest(_named(self.non_defaults({f.name for f in fields(self) if f.metadata.get("hashed", True)})))

    @property
    def is_dense(self):
        """Removes nothing: the dense baseline, whatever the kind says."""
        return self.kind == "dense" or self.p == 0

    def dense_config(self):
        """The dense run this trial's tickets come from: the same net, data, seed and training."""
        keep = {f.name for f in fields(self) if f.metadata.get("dense", True)} | _CARRIED
        return TrialConfig(**{k: v for k, v in self.to_dict().items() if k in keep} | {"kind": "dense"})

    def dense_key(self):
        """Names the stored dense run: only what changes the dense training."""
        return _digest(_named(self.non_defaults({f.name for f in fields(self) if f.metadata.get("dense", True)} - {"kind"})))

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        # type and range of each value, before anything uses it
        values, problems = checked_values(cls, values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            message = f"unknown trial config keys {unknown}; allowed: {sorted(known)}"
            problems.append((None, ValueError(hinted(message, unknown, known))))
        raise_all(problems)  # every bad value and unknown key at once
        for name in ("checkpoint_epochs", "rewind_epochs", "robustness"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


DEFAULT_DENSE_DIR = TrialConfig.__dataclass_fields__["dense_dir"].default
# not part of the dense run's identity, but handed to it
_CARRIED = {"data_dir", "device", "compile", "graph", "fuse", "country", "emissions", "dense_dir", "gpu_share",
            "data_workers", "data_decode"}


def _named(values):
    """The arch by its identity: a renamed architecture never meets results of its old meaning; a
    dataset that streams by its content (`dataset_identity`), not by where it lies."""
    values = values | {"arch": identity(values["arch"])} if "arch" in values else values
    if "dataset" in values and is_stream(values["dataset"]):
        values = values | {"dataset": stream_identity(Storage(values["dataset"]).location)}
    return values


def _digest(values):
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=list).encode()).hexdigest()[:12]


def add_arguments(parser, cls=TrialConfig):
    """One --flag per field, with its help text and default."""
    for f in fields(cls):
        flags = ["-" + f.name] if len(f.name) == 1 else ["--" + f.name.replace("_", "-")]
        kwargs = {"help": f"{f.metadata['help']} (default: {f.default})", "dest": f.name}
        if f.default is not MISSING and (isinstance(f.default, bool) or _takes_bool(f)):
            # --flag / --no-flag; a field that also takes a word (compile: "auto") keeps it as the default
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=f.default, **kwargs)
            continue
        if "nargs" in f.metadata:
            kwargs.update(nargs=f.metadata["nargs"], type=f.metadata["type"])
        else:
            kwargs["type"] = {"int | None": int, "float | None": float}.get(str(f.type), _scalar_type(f))
        parser.add_argument(*flags, default=f.default, **kwargs)


def _takes_bool(f):
    kind = field_type(f)[0]
    return kind is bool or (isinstance(kind, tuple) and bool in kind)


def _scalar_type(f):
    return {int: int, float: float, "int": int, "float": float}.get(f.type, str)


def from_arguments(namespace, cls=TrialConfig):
    return cls.from_dict({f.name: getattr(namespace, f.name) for f in fields(cls)})
