"""Robustness measurements on real CIFAR-10 images with a briefly trained ResNet-20."""

import hashlib
import tarfile

import numpy as np
import pytest
import torch

from layerlth.data import Batches, DatasetUnavailable, load_dataset
from layerlth.foundations.recipes import get_recipe
from layerlth.measure.robustness import archives, corruptions
from layerlth.measure.robustness.attacks import AttackSettings, PixelInput, adversarial_accuracy, make_attack
from layerlth.measure.robustness.evaluate import accuracy, cifar102_accuracy, corruption_accuracy
from layerlth.models import build_model
from layerlth.training.loop import evaluate, train


@pytest.fixture(scope="module")
def trained(cifar_fixture):
    """ResNet-20 after 4 short epochs on 1024 real CIFAR-10 images: well above chance, far from good."""
    torch.manual_seed(0)
    data = load_dataset(cifar_fixture).subset(train=1024)
    model = build_model("resnet20")
    history = train(model, data, get_recipe("he2016").scaled(4, 64, None), seed=0)
    assert history[-1]["test_acc"] > 0.2  # chance is 0.1
    return model.eval(), data


def test_generated_corruptions_hurt_more_as_severity_grows(trained, tmp_path, monkeypatch):
    model, data = trained
    found = corruption_accuracy(model, corruptions.generated(data, 80, tmp_path), data)
    assert found["source"] == "generated" and found["images"] == 80
    assert set(found["corruptions"]) == set(corruptions.ALL) and len(corruptions.STANDARD) == 15
    severities = found["severities"]
    # severity 1 sits within a few of 80 images of clean for this weak net, which CPUs' float
    # kernels (AVX2, AVX-512, AMX) tip either way: the firm facts are at severity 5 and on average
    assert severities["5"] < severities["1"] and severities["5"] < found["clean_acc"] - 0.02
    assert found["mean_standard"] < found["clean_acc"]
    assert found["mean_standard"] == pytest.approx(np.mean([found["corruptions"][c]["mean"] for c in corruptions.STANDARD]))
    # cached once per dataset: a second call reads the folder instead of generating
    monkeypatch.setattr(corruptions, "generate", lambda *a: pytest.fail("generated twice"))
    again = corruptions.generated(data, 80, tmp_path)
    assert again.folder.parent.name == "corruptions-generated" and again.per_severity == 80


def test_corruptions_change_images_reproducibly_also_small_grey_ones():
    digits = load_dataset("digits").test_x[:6].permute(0, 2, 3, 1).numpy()
    for name in ("gaussian_noise", "spatter", "glass_blur"):
        a, b = corruptions.corrupt_images(digits, name, 5), corruptions.corrupt_images(digits, name, 5)
        assert a.shape == digits.shape and a.dtype == np.uint8 and np.array_equal(a, b)
        assert not np.array_equal(a, digits)


def test_attacks_pgd_at_most_fgsm_at_most_clean(trained):
    model, data = trained
    found = adversarial_accuracy(model, data, ["fgsm", "pgd"], AttackSettings(images=300))
    assert found["pgd"] <= found["fgsm"] < found["clean"]
    assert found["clean"] - found["fgsm"] > 0.05  # 8/255 is a real perturbation for an undefended net
    # the attacks see the same net as the normalised batches do
    clean = evaluate(model, Batches(data.subset(test=300), 300, train=False))[1]
    assert found["clean"] == pytest.approx(clean, abs=1 / 300)


def test_eps_zero_leaves_accuracy_unchanged(trained):
    model, data = trained
    found = adversarial_accuracy(model, data, ["fgsm", "pgd"], AttackSettings(eps=0.0, images=300))
    assert found["fgsm"] == found["pgd"] == found["clean"]


def test_attacks_find_no_normalisation_to_apply_on_the_pixel_net():
    """torchattacks 3.4 (3.5 for its RobModel) reads `model.mean`/`model.std` by name, takes the
    model to want normalised inputs and normalises around the attack again; named so, PixelInput's
    (1, 3, 1, 1) buffers broke every attack (issue #16). The attacked net must offer no such names."""
    mean, std = torch.tensor([125.3, 123.0, 113.9]), torch.tensor([63.0, 62.1, 66.7])
    net = PixelInput(torch.nn.Conv2d(3, 10, 32), mean, std)
    for name in ("mean", "std"):
        assert not hasattr(net, name), f"PixelInput.{name} would be picked up by torchattacks"
    for name in ("fgsm", "pgd"):
        attack = make_attack(name, net, AttackSettings())
        assert attack.normalization_used is None and not attack._normalization_applied


def test_attack_settings_are_checked():
    with pytest.raises(ValueError, match="eps must be in"):
        AttackSettings(eps=8)
    with pytest.raises(ValueError, match="steps and attacked images must be >= 1"):
        AttackSettings(steps=0)


def _cifar10c_tar(root, data, n):
    """A tiny CIFAR-10-C.tar in the published layout: CIFAR-10-C/<corruption>.npy with severities
    1..5 in blocks of n images (here the clean test images), and labels.npy."""
    folder = root / "build" / "CIFAR-10-C"
    folder.mkdir(parents=True)
    images = data.test_x[:n].permute(0, 2, 3, 1).numpy()
    for name in corruptions.ALL:
        np.save(folder / f"{name}.npy", np.concatenate([images] * 5))
    np.save(folder / "labels.npy", np.tile(data.test_y[:n].numpy(), 5))
    path = root / archives.CIFAR10C_FILE
    with tarfile.open(path, "w") as tar:
        tar.add(folder, arcname="CIFAR-10-C")
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar10c_archive_is_checked_extracted_and_read(trained, tmp_path, monkeypatch):
    model, data = trained
    monkeypatch.setattr(archives, "CIFAR10C_MD5", _cifar10c_tar(tmp_path, data, 40))
    found = corruption_accuracy(model, corruptions.CorruptionSet(archives.cifar10c_dir(tmp_path), "archive"), data)
    assert (tmp_path / "CIFAR-10-C" / archives.VERIFIED).is_file()
    assert found["source"] == "archive" and found["images"] == 40
    # every block holds the clean images, so every corruption scores the clean accuracy
    assert {found["corruptions"][c][str(s)] for c in corruptions.ALL for s in corruptions.SEVERITIES} == {found["clean_acc"]}
    images, labels = corruptions.CorruptionSet(tmp_path / "CIFAR-10-C", "archive").images("fog", 3)
    assert images.shape == (40, 32, 32, 3) and np.array_equal(labels, data.test_y[:40].numpy())


def test_a_download_that_fails_the_published_md5_is_refused(tmp_path, monkeypatch):
    from layerlth.foundations._torchvision import torchvision

    utils = torchvision.datasets.utils
    monkeypatch.setattr(utils, "_get_redirect_url", lambda url, max_hops: url)
    monkeypatch.setattr(utils, "_urlretrieve", lambda url, path: open(path, "wb").write(b"an error page"))
    with pytest.raises(DatasetUnavailable, match="could not be downloaded .File not found or corrupted"):
        archives.cifar10c_dir(tmp_path)
    assert not (tmp_path / "CIFAR-10-C").exists()


def test_cifar102_is_read_from_its_published_layout(trained, tmp_path):
    model, data = trained
    x = data.test_x.repeat(7, 1, 1, 1)[:2000]  # the committed images: 320 test images, repeated
    y = data.test_y.repeat(7)[:2000]
    np.savez(tmp_path / archives.CIFAR102_FILE, images=x.permute(0, 2, 3, 1).numpy(), labels=y.numpy(),
             label_names=np.array(["airplane"] * 10), ti_indices=np.arange(2000), keywords=np.array(["k"] * 2000))
    found = cifar102_accuracy(model, data, tmp_path)
    assert found["images"] == 2000 and found["acc"] == accuracy(model, x, y, data)
    np.savez(tmp_path / "bad.npz", images=np.zeros((5, 3, 32, 32), np.uint8), labels=np.zeros(5))  # NCHW
    with pytest.raises(ValueError, match=r"expected images \(N, 32, 32, 3\) uint8"):
        archives.read_cifar102(tmp_path / "bad.npz")


@pytest.mark.parametrize("load,name,url", [
    (archives.cifar10c_dir, "CIFAR-10-C.tar", archives.CIFAR10C_URL),
    (archives.cifar102, "cifar102_test.npz", archives.CIFAR102_URL),
])
def test_missing_archives_offline_say_what_to_put_where(load, name, url, tmp_path, monkeypatch):
    def offline(*args):
        raise OSError("no network")

    monkeypatch.setattr(archives, "_download", offline)
    with pytest.raises(DatasetUnavailable) as error:
        load(tmp_path)
    message = str(error.value)
    assert "could not be downloaded (no network)" in message and f"download {url} and put {name} into {tmp_path}" in message
