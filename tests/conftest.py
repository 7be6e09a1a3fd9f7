import hashlib
import os
from pathlib import Path

import pytest
import torch

from layerlth.data import subset

# the fast suite's real images, committed (tests/data/cifar10-fixture/README.md says which)
FIXTURE = Path(__file__).parent / "data" / "cifar10-fixture" / "cifar10-fixture.npz"
FIXTURE_SHA256 = "e1790939aaacbed6e27e130d8ff0ccfc13814eb5253463329b9afde6b81b3bfb"
# the larger subset for slow and CUDA tests, looked for now: the tests move LAYERLTH_DATA to tmp dirs
SUBSET = subset.find_subset()


@pytest.fixture(scope="session")
def cifar_fixture():
    """1,600 real CIFAR-10 images committed with the tests: the first 1,280 of the training set, the
    first 320 of the test set (the subset's first images, so a test of N <= 1,102 sees the same)."""
    found = hashlib.sha256(FIXTURE.read_bytes()).hexdigest()
    assert found == FIXTURE_SHA256, f"{FIXTURE} has sha256 {found}, not {FIXTURE_SHA256}: it was changed"
    return str(FIXTURE)


@pytest.fixture(scope="session")
def cifar_subset():
    """The 10% CIFAR-10 subset (`layerlth.data.subset`); without it the run stops with one line."""
    if SUBSET is None:
        stop_without_subset()
    return str(SUBSET)


def stop_without_subset():
    pytest.exit(f"slow tests need {subset.NAME}, found in none of {', '.join(map(str, subset.places()))}: "
                f"{subset.HOW_TO_GET}", returncode=1)


def pytest_collection_finish(session):
    """A run that will read the subset and has none stops before its first test, in one line."""
    cuda = torch.cuda.is_available()
    needs = [item for item in session.items if "cifar_subset" in getattr(item, "fixturenames", ())
             and (cuda or item.get_closest_marker("cuda") is None)]
    if needs and SUBSET is None:
        stop_without_subset()


@pytest.fixture(autouse=True)
def _seed_and_quiet(tmp_path, monkeypatch):
    torch.manual_seed(0)
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("LAYERLTH_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # results/ (the default dense store) lands in the test's tmp dir


def pytest_configure(config):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray for all sweep tests (start-up costs seconds)."""
    import tempfile

    import ray

    os.environ.update(RAY_AUTH_MODE="disabled", RAY_AIR_NEW_OUTPUT="0", TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1",
                      TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S="0")
    # workers import a user's module:callable (tests/user_model.py) as on a cluster: on PYTHONPATH
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    yield
    ray.shutdown()
