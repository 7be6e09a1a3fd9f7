import os
from pathlib import Path

import pytest
import torch

# LAYERLTH_TEST_DATA points the tests at a copy of the subset where ../shared/data is not there
# (a GPU machine that gets only the working tree: benchmarks/gpu_suite.py sets it)
SUBSET = Path(os.environ.get("LAYERLTH_TEST_DATA")
              or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-subset.npz")


@pytest.fixture(scope="session")
def cifar_subset():
    """Real CIFAR-10 images (10% of the training set) shipped beside the project."""
    assert SUBSET.is_file(), f"{SUBSET} is missing: the tests read real images from it (or set LAYERLTH_TEST_DATA)"
    return str(SUBSET)


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
