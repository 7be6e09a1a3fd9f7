"""The CIFAR-10 subset of the slow tests and benchmarks: where it is found, how it is cut, and the
one line a run without it prints."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from layerlth.data import subset

ROOT = Path(__file__).resolve().parents[1]


def fake_cifar(train_rows, test_rows, fill=7):
    """CIFAR-10-shaped arrays (50,000 + 10,000 images) holding `train_rows` where the subset's
    images of each batch sit, and `fill` everywhere else."""
    train_x = np.full((50_000, 3, 32, 32), fill, np.uint8)
    train_y = np.full(50_000, 9, np.uint8)
    start = 0
    for batch, count in enumerate(subset.TRAIN_PER_BATCH):
        take = train_rows[0][start:start + count]
        train_x[batch * subset.BATCH_SIZE:][:len(take)] = take
        train_y[batch * subset.BATCH_SIZE:][:len(take)] = train_rows[1][start:start + count]
        start += count
    test_x = np.full((10_000, 3, 32, 32), fill, np.uint8)
    test_x[:len(test_rows[0])] = test_rows[0]
    test_y = np.zeros(10_000, np.uint8)
    test_y[:len(test_rows[1])] = test_rows[1]
    return train_x, train_y, test_x, test_y


def test_the_cut_takes_the_first_images_of_each_official_batch(cifar_fixture):
    with np.load(cifar_fixture) as a:
        train, test = (a["train_x"], a["train_y"]), (a["test_x"], a["test_y"])
    arrays = subset.cut(*fake_cifar(train, test))
    assert arrays["train_x"].shape == (5170, 3, 32, 32) and arrays["test_x"].shape == (1017, 3, 32, 32)
    # the fixture is the subset's first 1,280 training images: all of batch 1's and 178 of batch 2's
    assert np.array_equal(arrays["train_x"][:1280], train[0]) and np.array_equal(arrays["train_y"][:1280], train[1])
    assert (arrays["train_x"][1280:] == 7).all() and np.array_equal(arrays["test_x"][:320], test[0])


def test_an_explicit_path_is_the_only_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLTH_TEST_DATA", str(tmp_path / "copy.npz"))
    assert subset.places() == [tmp_path / "copy.npz"] and subset.find_subset() is None
    monkeypatch.delenv("LAYERLTH_TEST_DATA")
    monkeypatch.setenv("LAYERLTH_DATA", str(tmp_path / "cache"))
    assert subset.places(tmp_path / "project") == [tmp_path / "shared" / "data" / subset.NAME,
                                                  tmp_path / "cache" / subset.NAME]
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / subset.NAME).write_bytes(b"x")
    assert subset.find_subset(tmp_path / "project") == tmp_path / "cache" / subset.NAME


def test_other_images_are_refused_before_anything_is_written(tmp_path, monkeypatch, cifar_fixture):
    from layerlth.data import ImageData, sources

    with np.load(cifar_fixture) as a:
        arrays = fake_cifar((a["train_x"], a["train_y"]), (a["test_x"], a["test_y"]))
    import torch

    data = ImageData("cifar10", *map(torch.from_numpy, arrays), num_classes=10, pad=4, flip=True)
    monkeypatch.setattr(sources, "load_dataset", lambda name, root: data)
    with pytest.raises(RuntimeError, match="does not give the published subset's images"):
        subset.make_subset(tmp_path)
    assert not list(tmp_path.iterdir())


def test_without_the_subset_a_slow_run_stops_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "LAYERLTH_TEST_DATA": str(tmp_path / "absent.npz"), "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow",
                          str(ROOT / "tests" / "test_end_to_end.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if "make test-data" in line]
    assert len(lines) == 1 and "Traceback" not in run.stdout + run.stderr, run.stdout
    assert "absent.npz" in lines[0]


@pytest.mark.slow
def test_make_test_data_writes_the_published_file_byte_for_byte(cifar_subset, tmp_path, monkeypatch):
    """The subset cut from (a CIFAR-10 holding) its images comes out with the published sha256."""
    import torch

    from layerlth.data import ImageData, sources

    assert subset.sha256(cifar_subset) == subset.SHA256
    with np.load(cifar_subset) as a:
        assert subset.arrays_digest(a) == subset.ARRAYS_SHA256
        arrays = fake_cifar((a["train_x"], a["train_y"]), (a["test_x"], a["test_y"]))
    data = ImageData("cifar10", *map(torch.from_numpy, arrays), num_classes=10, pad=4, flip=True)
    monkeypatch.setattr(sources, "load_dataset", lambda name, root: data)
    written = subset.make_subset(tmp_path)
    assert written == tmp_path / subset.NAME and subset.sha256(written) == subset.SHA256
