import numpy as np
import pytest
import torch

from layerlth.data import Batches, DatasetUnavailable, check_dataset, load_dataset
from layerlth.data.batches import random_crop, random_flip


def test_npz_reads_the_committed_cifar_images(cifar_fixture):
    data = load_dataset(cifar_fixture)
    assert (len(data.train_x), len(data.test_x)) == (1280, 320)
    assert data.image_size == (3, 32, 32) and data.num_classes == 10 and data.pad == 4
    counts = torch.bincount(data.train_y)
    assert len(counts) == 10 and int(counts.min()) > 100  # about balanced


@pytest.mark.slow
def test_npz_reads_the_real_cifar_subset(cifar_subset):
    data = load_dataset(cifar_subset)
    assert (len(data.train_x), len(data.test_x)) == (5170, 1017)
    counts = torch.bincount(data.train_y)
    assert len(counts) == 10 and int(counts.min()) > 400  # about balanced


def test_npz_without_the_arrays_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="lacks arrays.*train_x"):
        load_dataset(str(path))


def test_digits_are_real_offline_and_split_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.image_size == (1, 8, 8) and (len(a.train_x), len(a.test_x)) == (1437, 360)
    assert torch.equal(a.test_y, b.test_y) and not a.flip
    assert int(a.train_x.max()) == 255


def test_unknown_and_missing_datasets_say_what_is_allowed(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'.*cifar10, cifar100, digits"):
        check_dataset("cifar11")
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        check_dataset(str(tmp_path / "none.npz"))


def test_cifar_download_failure_says_how_to_get_it(tmp_path, monkeypatch):
    from layerlth.foundations._torchvision import torchvision

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", type("Offline", (), {"__init__": offline, "filename": "cifar-10-python.tar.gz"}))
    with pytest.raises(DatasetUnavailable, match="could not be downloaded.*no network.*cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path)


def test_random_crop_is_a_window_of_the_zero_padded_image():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).reshape(2, 3, 6, 6)
    assert torch.equal(random_crop(x, 0, torch.Generator().manual_seed(0)), x)
    g = torch.Generator().manual_seed(0)
    crops = random_crop(x, 2, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for image, crop in zip(padded, crops):
        windows = [image[:, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(crop, w) for w in windows)


def test_random_flip_flips_some_images_horizontally():
    x = torch.arange(64 * 4, dtype=torch.uint8).reshape(64, 1, 2, 2)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    assert all(f or torch.equal(o, i) for f, o, i in zip(flipped, out, x))
    assert 10 < sum(flipped) < 54


def test_batches_cover_each_image_once_and_are_seeded(cifar_fixture):
    data = load_dataset(cifar_fixture).subset(train=300)
    first = list(Batches(data, 128, True, torch.Generator().manual_seed(3)))
    again = list(Batches(data, 128, True, torch.Generator().manual_seed(3)))
    assert sum(len(y) for _, y in first) == 300
    assert torch.equal(torch.sort(torch.cat([y for _, y in first])).values, torch.sort(data.train_y).values)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    x = torch.cat([x for x, _ in Batches(data, 128, False)])
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.1
