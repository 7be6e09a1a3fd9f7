"""What is read back from storage, without Ray: checkpoints are a state_dict and a plain
architecture (a planted pickle never runs), a damaged record is set aside and rerun, a dense run
with missing or damaged weights is trained again (its manifest catches it)."""

import io
import logging
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))

import layerlth.foundations.atomic as checkpoints  # noqa: E402
import layerlth.foundations.storage as storage_module  # noqa: E402
from layerlth.models import build_model  # noqa: E402
from layerlth.models.filters import remove_filters  # noqa: E402
from layerlth.sweep.store import SweepStore  # noqa: E402
from layerlth.tickets.dense_runs import DenseRun  # noqa: E402
from layerlth.tickets.trial import run_trial  # noqa: E402
from layerlth.training.loop import EpochState  # noqa: E402

# --- checkpoints: a state_dict and a plain architecture, never code --------------------------------

class Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for any command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickle_in_a_checkpoint_does_not_run(tmp_path):
    from ray import tune

    from layerlth.sweep.tune.trainable import STATE, UnsafeCheckpoint, load_checkpoint

    marker = tmp_path / "pwned"
    planted = tmp_path / "checkpoint"
    planted.mkdir()
    torch.save({"model": Payload(marker), "epoch": 3}, planted / STATE)
    torch.load(planted / STATE, weights_only=False)  # the payload is live: a full unpickle runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeCheckpoint, match=f"checkpoint .*{STATE} is not a layerlth checkpoint"):
        load_checkpoint(tune.Checkpoint.from_directory(str(planted)), SimpleNamespace(arch="resnet20", shortcut="B", dataset="digits"))
    assert not marker.exists()


def test_planted_pickle_in_the_dense_store_does_not_run(tmp_path):
    from layerlth.foundations.config import TrialConfig

    marker = tmp_path / "pwned"
    run = DenseRun(TrialConfig(dense_dir=str(tmp_path / "dense")), 8)
    Path(run.directory).mkdir(parents=True)
    for epoch in run.saved_epochs:
        torch.save(build_model("resnet20").state_dict(), run.weights_path(epoch))
    torch.save({"conv1.weight": Payload(marker)}, run.weights_path(run.epochs))
    checkpoints.write_json_atomic({"status": "finished"}, run.result_path)
    assert not run.complete() and not marker.exists()
    with pytest.raises(Exception, match="Weights only load failed"):
        run.weights(run.epochs)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["blocks", "filters"])
def test_checkpoint_rebuilds_the_tickets_architecture(tmp_path, kind):
    from layerlth.sweep.tune.trainable import checkpoint_state, load_state

    torch.manual_seed(0)
    dense = build_model("resnet20", num_classes=7, in_channels=1)
    ticket = (build_model("resnet20", 7, 1, removed=["stage1.block2", "stage3.block3"]) if kind == "blocks"
              else remove_filters(dense, {"stage1.block1": [0, 5], "stage2.block3": list(range(20))}))
    optimizer = torch.optim.SGD(ticket.parameters(), lr=0.1, momentum=0.9)
    ticket(torch.randn(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    state = EpochState(4, ticket, optimizer, {"test_acc": 0.5}, [{"epoch": 4, "test_acc": 0.5}],
                       {"removed": ["stage1.block2"], "scores": {"stage1.block2": 0.25}, "start_epoch": 0})
    torch.save(checkpoint_state(state, SimpleNamespace(arch="resnet20", shortcut="B", dataset="digits"), [0]), tmp_path / "state.pt")
    resumed = load_state(tmp_path / "state.pt", SimpleNamespace(arch="resnet20", shortcut="B", dataset="digits"))
    model = resumed["model"]
    assert [n for n, _ in model.named_modules()] == [n for n, _ in ticket.named_modules()]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ticket.state_dict().values()))
    assert resumed["epoch"] == 4 and resumed["context"]["attempts"] == [0] and resumed["history"][0]["epoch"] == 4
    torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).load_state_dict(resumed["optimizer"])


def test_resume_takes_the_most_trained_checkpoint_left_on_storage(tmp_path, caplog):
    """A driver killed before Tune's snapshot saw a trial's latest checkpoints: the trial still
    continues from the most trained one on storage, skipping one a kill cut short."""
    from ray import tune

    from layerlth.sweep.tune.trainable import STATE, checkpoint_state, resume_state

    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=7, in_channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def save(folder, epoch):
        Path(folder).mkdir(parents=True)
        state = EpochState(epoch, model, optimizer, {}, [], {"start_epoch": 0})
        config = SimpleNamespace(arch="resnet20", shortcut="B", dataset="digits")
        torch.save(checkpoint_state(state, config, [0]), Path(folder) / STATE)
        return folder

    tune_dir = tmp_path / "tune"
    save(tune_dir / "sweep-1" / "abc" / "checkpoint_000000", 1)
    save(tune_dir / "sweep-1" / "abc" / "checkpoint_000002", 3)
    save(tune_dir / "sweep-1" / "other" / "checkpoint_000005", 6)  # another trial's
    cut = save(tune_dir / "sweep-1" / "abc" / "checkpoint_000003", 4)
    data = (cut / STATE).read_bytes()
    (cut / STATE).write_bytes(data[: len(data) // 2])
    storage = storage_module.Storage(tmp_path)
    config = SimpleNamespace(arch="resnet20", shortcut="B", dataset="digits")
    assert resume_state(None, storage, "new", config) is None
    with caplog.at_level(logging.WARNING, logger="layerlth"):
        assert resume_state(None, storage, "abc", config)["epoch"] == 3
    assert "checkpoint_000003" in caplog.text
    given = tune.Checkpoint.from_directory(str(save(tmp_path / "given", 2)))
    assert resume_state(given, storage, "abc", config)["epoch"] == 3  # Tune's snapshot knew an older one
    newer = tune.Checkpoint.from_directory(str(save(tmp_path / "newer", 5)))
    assert resume_state(newer, storage, "abc", config)["epoch"] == 5


# --- the store: a damaged record is named, set aside and rerun -------------------------------------

def test_corrupt_record_is_named_set_aside_and_rerun(tmp_path, caplog):
    store = SweepStore(tmp_path)
    store.save({"trial_id": "good", "status": "finished", "final_test_acc": 0.5})
    bad = Path(store.storage.path(store.result_name("bad")))
    bad.parent.mkdir(parents=True)
    bad.write_text('{"trial_id": "bad", "status": "fini')  # cut off mid-write
    with caplog.at_level(logging.WARNING, logger="layerlth"):
        assert not store.finished("bad")
    assert str(bad) in caplog.text and "will run again" in caplog.text
    assert not bad.exists() and bad.with_name("result.json.corrupt").is_file()
    bad.write_bytes(b"\xff\xfe[1, 2]")  # not even text; a relaunch lists the rows again
    assert [r["trial_id"] for r in store.rows()] == ["good"]
    assert list(store.write_table()["trial_id"]) == ["good"]


# --- dense runs: complete means every promised file exists and loads -------------------------------

def test_dense_run_with_missing_or_damaged_weights_is_trained_again(tmp_path):
    config = {"kind": "dense", "dataset": "digits", "arch": "resnet20", "recipe": "he2016", "epochs": 2,
              "train_subset": 64, "emissions": False, "device": "cpu", "dense_dir": str(tmp_path / "dense")}
    first = run_trial(config)
    assert not first["dense_reused"] and run_trial(config)["dense_reused"]
    run = DenseRun(SimpleNamespace(rewind_epochs=(), dense_dir=config["dense_dir"],
                                   dense_key=lambda: Path(first["dense_run"]).name), 2)
    Path(run.weights_path(0)).unlink()
    again = run_trial(config)
    assert not again["dense_reused"] and Path(run.weights_path(0)).is_file()
    last = Path(run.weights_path(2))
    last.write_bytes(last.read_bytes()[:100])  # truncated
    assert not run.complete()
    assert not run_trial(config)["dense_reused"] and run.complete()
    assert torch.load(run.weights_path(2), weights_only=True).keys() == build_model("resnet20", 10, 1).state_dict().keys()


def stored_dense_run(tmp_path, manifest=True):
    """A dense run of small weights files, stored with (or, as before manifests, without) its manifest."""
    from layerlth.foundations.config import TrialConfig

    run = DenseRun(TrialConfig(dense_dir=str(tmp_path / "dense")), 8)
    for epoch in run.saved_epochs:
        buffer = io.BytesIO()
        torch.save({"weight": torch.full((64,), float(epoch))}, buffer)
        run.storage.write_bytes(run.weights_name(epoch), buffer.getvalue())
    if manifest:
        run.save_result({"status": "finished"})
    else:
        run.storage.write_json("result.json", {"status": "finished"})
    return run


@pytest.fixture
def loads(monkeypatch):
    """How many weights files torch.load has read."""
    counted, load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: counted.append(1) or load(*a, **k))
    return counted


def test_manifest_catches_a_truncated_weights_file_without_loading_any(tmp_path, loads):
    run = stored_dense_run(tmp_path)
    assert sorted(run.manifest()) == sorted(run.weights_name(e) for e in run.saved_epochs)
    assert run.complete() and loads == []
    last = Path(run.weights_path(run.epochs))
    last.write_bytes(last.read_bytes()[:-10])
    assert not run.complete() and loads == []
    assert re.search(rf"{last} has \d+ bytes, its manifest says \d+", "; ".join(run.problems()))


def test_dense_run_stored_before_manifests_is_loaded_once_then_has_one(tmp_path, loads):
    run = stored_dense_run(tmp_path, manifest=False)
    assert run.manifest() is None
    assert run.complete() and len(loads) == len(run.saved_epochs)
    assert run.manifest() == stored_dense_run(tmp_path / "new").manifest()  # the same bytes, the same entries
    assert run.complete() and len(loads) == len(run.saved_epochs)  # the next check loads nothing


def test_weights_changed_in_place_are_caught_when_loaded(tmp_path, loads):
    run = stored_dense_run(tmp_path)
    path = Path(run.weights_path(0))
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # same size: only the hash can tell
    path.write_bytes(bytes(data))
    assert run.complete()
    with pytest.raises(ValueError, match=rf"{path} is damaged: its sha256 .* is not the manifest's"):
        run.weights(0)
    assert loads == [] and not run.complete()  # set aside: it will be trained again
    assert Path(run.storage.path("result.json.corrupt")).is_file()
    assert run.weights(run.epochs)["weight"][0] == run.epochs  # the intact files still load
