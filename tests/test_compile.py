"""`compile`: torch.compile of the network that trains. Off by default ("auto": off everywhere since
CUDA graphs became CUDA's fast path; measured no faster on the H200), refused when it is anything but "auto", true or false, outside the trial hash and dense key;
checkpoints and saved weights are the plain module's, and a resumed compiled trial compiles again.

The fast tests put a stand-in for torch.compile's wrapper in its place (a module holding the net as
`_orig_mod`, so its state_dict has the same prefixed keys): they check layerlth's side in seconds. The
slow ones compile with inductor, as a trial does: on 2 busy CPU cores a new network costs 40-60 s of
compilation with an empty inductor cache, ~5 s with a warm one (the cache outlives the process)."""

import argparse
import copy
import io

import pytest
import torch

import layerlth.training.loop as train_module
from layerlth.data import load_dataset
from layerlth.foundations.config import TrialConfig, add_arguments, from_arguments
from layerlth.foundations.recipes import get_recipe
from layerlth.models import build_for_images
from layerlth.tickets.dense_runs import DenseRun
from layerlth.tickets.trial import run_trial
from layerlth.training import fastpath
from layerlth.training.checkpoints import checkpoint_state, load_state, ticket_weights

# small enough that compiling, not training, is the cost; the paper recipe's lr 0.01 (he2016's 0.1
# turns float-rounding differences of a few steps into percent-level loss differences)
SMALL = dict(arch="resnet20", dataset="digits", recipe="paper", batch_size=64, train_subset=256, amp=False,
             emissions=False, device="cpu")
TICKET = dict(SMALL, kind="at_init", criterion="grasp", p=1, score_batches=1)
# compiled vs eager mean losses per epoch (train and test), absolute, for losses of ~2.3 (0.4%).
# Fused kernels round differently, and these few steps amplify rounding: eager training itself,
# started from weights perturbed by 1e-7 (relative), differs from the unperturbed run by up to 4e-3
# in single-step losses by step 6. Measured compiled vs eager on a 2-core Xeon (AVX-512, fp32 +
# channels_last): 1e-5 in epoch 1, 1.4e-3 in epoch 2's train loss with 1 thread, 1.5e-4 with 2.
# A warm-up that left a trace is caught exactly (bit for bit) by the fast test below.
LOSS_TOLERANCE = 1e-2


class Killed(Exception):
    """Stands in for a power cut after the last checkpoint."""


class Compiled(torch.nn.Module):
    """Stands in for torch.compile's OptimizedModule: the net as `_orig_mod` (so `_orig_mod.` keys in
    its state_dict), and the batch sizes it ran."""

    def __init__(self, model):
        super().__init__()
        self._orig_mod, self.batches = model, []

    def forward(self, x):
        self.batches.append(len(x))
        return self._orig_mod(x)


@pytest.fixture
def fake_compile(monkeypatch):
    """torch.compile replaced by `Compiled`; returns the list of (wrapper, keyword arguments) made."""
    made = []

    def compile_(model, **kwargs):
        made.append((Compiled(model), kwargs))
        return made[-1][0]

    monkeypatch.setattr(torch, "compile", compile_)
    return made


def no_prefixes(state_dict):
    return not any(key.startswith("_orig_mod.") or "._orig_mod." in key for key in state_dict)


# --- the option: default per device, values, CLI, hash ------------------------------------------

def test_auto_compiles_nowhere_and_a_cpu_row_says_so(tmp_path):
    assert fastpath.compile_mode("cpu") is None and fastpath.compile_mode("cuda") is None
    assert fastpath.compile_mode("cpu", True) == "default" and fastpath.compile_mode("cuda", True) == "default"
    assert fastpath.compile_mode("cuda", False) is None
    assert fastpath.choose("cpu").record()["compiled"] is False
    row = run_trial(dict(SMALL, kind="dense", epochs=1, train_subset=64, dense_dir=str(tmp_path / "dense")))
    assert row["compile"] == "auto"
    assert (row["compiled"], row["compile_mode"], row["compile_seconds"]) == (False, None, 0.0)


@pytest.mark.parametrize("value", ["yes", "on", 1, None, "default"])
def test_a_bad_value_is_refused_naming_it_and_what_is_allowed(value):
    with pytest.raises(ValueError, match=r"compile=.*: expected one of 'auto', true, false"):
        TrialConfig.from_dict({"compile": value})
    with pytest.raises(ValueError, match=r"compile=.*: expected one of 'auto', true, false"):
        run_trial(TrialConfig(**SMALL, compile=value))  # a dataclass built directly: refused before any work


def test_flags_and_values():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert [from_arguments(parser.parse_args(argv)).compile for argv in ([], ["--compile"], ["--no-compile"])] == [
        "auto", True, False]
    assert [TrialConfig.from_dict({"compile": v}).compile for v in ("auto", True, False)] == ["auto", True, False]


def test_compile_changes_no_trial_hash_nor_dense_key():
    """Stored trials and dense runs serve compiled and eager trials alike (like device)."""
    pinned = dict(kind="after_training", arch="resnet32", dataset="cifar10", criterion="kl", p=1, rewind=25)
    for value in ("auto", True, False):
        config = TrialConfig(**pinned, compile=value)
        assert (config.hash(), config.dense_key()) == ("7df2be83b7d9", "1ed809d3c02b")
        assert config.dense_config().compile == value  # the dense run it trains is compiled as asked


# --- warm-up, checkpoints and resume, with a stand-in for the compiled wrapper (seconds) ---------

def test_the_warm_up_compiles_every_batch_size_and_leaves_no_trace(fake_compile):
    """Training after the warm-up is bit for bit eager training: no step taken, BN statistics and RNG
    restored; the full and the partial batch (100 = 64 + 36) are both compiled before training."""
    data = load_dataset("digits").subset(train=100)
    torch.manual_seed(0)
    model = build_for_images("resnet20", data.num_classes, data.image_size)
    recipe = get_recipe("paper").scaled(epochs=2, batch_size=64)
    eager, compiled = copy.deepcopy(model), copy.deepcopy(model)
    eager_history = train_module.train(eager, data, recipe, channels_last=True)

    runner, seconds = train_module.compile_for_training(compiled, data, 64, channels_last=True)
    [(wrapper, kwargs)] = fake_compile
    assert runner is wrapper and kwargs == {"mode": "default", "dynamic": False} and seconds > 0
    assert wrapper.batches == [36, 64]  # warm-up: each training batch size once
    history = train_module.train(compiled, data, recipe, channels_last=True, runner=runner)

    assert train_module.batch_sizes(100, 64) == [36, 64] and train_module.batch_sizes(129, 64) == [64]
    assert wrapper.batches[2:] == [64, 36] * 2  # every training step went through the compiled module
    strip = [{k: v for k, v in h.items() if k not in ("epoch_seconds", "images_per_second")} for h in history]
    assert strip == [{k: v for k, v in h.items() if k not in ("epoch_seconds", "images_per_second")}
                     for h in eager_history]
    assert no_prefixes(compiled.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(eager.state_dict().values(), compiled.state_dict().values()))


def test_compiled_trials_save_plain_weights_and_resume_compiles_again(tmp_path, fake_compile):
    dense_dir = str(tmp_path / "dense")
    row = run_trial(dict(SMALL, kind="dense", epochs=1, compile=True, dense_dir=dense_dir))
    assert row["compiled"] and row["compile_mode"] == "default" and row["compile_seconds"] > 0
    run = DenseRun(TrialConfig(**SMALL, epochs=1, dense_dir=dense_dir), 1)
    assert all(no_prefixes(run.weights(e)) for e in run.saved_epochs)

    _checkpointed_and_resumed(tmp_path, dense_dir, compilations=fake_compile)


def _checkpointed_and_resumed(tmp_path, dense_dir, compilations=None):
    """A compiled ticket killed after epoch 2's checkpoint, then resumed from it to epoch 3."""
    config = TrialConfig(**TICKET, epochs=3, compile=True, dense_dir=dense_dir, out_dir=str(tmp_path / "out"),
                         checkpoint_epochs=(1,))
    saved = {}

    def checkpoint_at_1_die_at_2(state):
        if state.epoch == 1 and state.metrics:
            saved["checkpoint"] = io.BytesIO()
            torch.save(checkpoint_state(state, config, [0]), saved["checkpoint"])
            saved["weights"] = ticket_weights(state, config)
        if state.epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        run_trial(config, callbacks=[checkpoint_at_1_die_at_2])
    saved["checkpoint"].seek(0)
    written = torch.load(io.BytesIO(saved["checkpoint"].getvalue()), weights_only=True)
    assert no_prefixes(written["state_dict"])
    assert no_prefixes(torch.load(io.BytesIO(saved["weights"]), weights_only=True)["state_dict"])
    assert no_prefixes(torch.load(tmp_path / "out" / "checkpoints" / "weights_epoch1.pt", weights_only=True))

    resume = load_state("checkpoint", config, saved["checkpoint"])  # a fresh net of the trial's architecture
    final = {}
    row = run_trial(config, resume=resume, callbacks=[lambda s: final.update(weights=ticket_weights(s, config))])
    assert row["status"] == "finished" and row["resumed_from_epoch"] == 1 and row["epochs_trained"] == 3
    assert row["compiled"] and row["compile_seconds"] > 0
    assert no_prefixes(torch.load(io.BytesIO(final["weights"]), weights_only=True)["state_dict"])
    if compilations is not None:  # the dense run, the first attempt, and again on resume (a fresh net)
        assert len(compilations) == 3 and compilations[2][0]._orig_mod is resume["model"]
        assert compilations[2][0].batches[-1] == 64  # it trained
    return row


# --- inductor, as a trial compiles (slow: a C++ build per network) ------------------------------

@pytest.mark.slow
def test_compiled_and_eager_training_follow_the_same_losses(tmp_path):
    rows = {value: run_trial(dict(SMALL, kind="dense", epochs=2, compile=value,
                                  dense_dir=str(tmp_path / f"dense-{value}")))  # not in the dense key
            for value in (False, True)}
    eager, compiled = rows[False], rows[True]
    assert (eager["compiled"], compiled["compiled"]) == (False, True) and compiled["compile_seconds"] > 0
    differences = [abs(e[k] - c[k]) for e, c in zip(eager["history"], compiled["history"])
                   for k in ("train_loss", "test_loss")]
    print(f"compile {compiled['compile_seconds']:.1f}s; loss differences compiled vs eager (train, test per epoch) "
          f"{[f'{d:.1e}' for d in differences]}; losses {[round(h['train_loss'], 4) for h in eager['history']]}")
    assert len(differences) == 4 and max(differences) < LOSS_TOLERANCE


@pytest.mark.slow
def test_compiled_ticket_checkpoints_plain_weights_and_resumes(tmp_path):
    row = _checkpointed_and_resumed(tmp_path, str(tmp_path / "dense"))
    assert row["compile_mode"] == "default"
