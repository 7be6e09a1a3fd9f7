"""The ImageNet grid: its data named by an environment variable, its trials named by the images,
priced before anything runs."""

import sys
from pathlib import Path

import pytest
from test_streams import write_folder

from layerlth.sweep.grid import GridError, expand, load_grid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import run as sweep_cli  # noqa: E402


@pytest.fixture(scope="module")
def folder(cifar_fixture, tmp_path_factory):
    return write_folder(cifar_fixture, tmp_path_factory.mktemp("imagenet"), train=60, val=20)


def test_the_grid_names_its_unset_variable(monkeypatch):
    monkeypatch.delenv("IMAGENET", raising=False)
    with pytest.raises(GridError, match="names the environment variable IMAGENET, which is not set; export IMAGENET="):
        load_grid("imagenet")


def test_the_grid_trains_resnet50_tickets_on_the_images_wherever_they_lie(folder, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setenv("IMAGENET", str(folder))
    trials = expand(load_grid("imagenet"))
    kinds = {(c.kind, c.criterion if c.p else None, c.p) for _, c in trials}
    assert len(trials) == 22 and {c.seed for _, c in trials} == {0, 1} and ("filter", "grasp", 4) in kinds
    assert {(c.arch, c.recipe, c.image_size, c.dataset) for _, c in trials} == {("resnet50", "imagenet", 224, str(folder))}
    monkeypatch.setenv("IMAGENET", str(shutil.copytree(folder, tmp_path / "copy")))
    assert [c.hash() for _, c in expand(load_grid("imagenet"))] == [c.hash() for _, c in trials]
    assert sweep_cli.main(["--grid", "imagenet", "--dry-run", "--slots", "8"]) == 0
    out = capsys.readouterr().out
    assert "grid imagenet: 22 trials" in out and "resnet50" in out and "slots" in out


def test_the_fast_grid_holds_the_same_trials_with_ffcvs_recipe(folder, monkeypatch):
    monkeypatch.setenv("IMAGENET", str(folder))
    classic, fast = (expand(load_grid(name)) for name in ("imagenet", "imagenet_fast"))
    assert [(c.kind, c.criterion, c.p, c.seed) for _, c in fast] == [(c.kind, c.criterion, c.p, c.seed) for _, c in classic]
    assert {(c.recipe, c.image_size) for _, c in fast} == {("imagenet_fast", 256)}
    from layerlth.sweep.estimate import trial_macs_and_images

    # priced by pixels trained: 12 epochs at 160 px and 4 at 192 px of the 256 px trial against 90 at
    # 224 px; each epoch's 20 validation images count a third of a trained image each
    dense_classic, dense_fast = (next(c for _, c in trials if c.kind == "dense") for trials in (classic, fast))
    (macs_224, classic_images), (macs_256, fast_images) = map(trial_macs_and_images, (dense_classic, dense_fast))
    assert classic_images == 60 * 90 + 20 * 90 / 3
    assert fast_images == round(60 * (12 * (160 / 256) ** 2 + 4 * (192 / 256) ** 2) + 20 * 16 / 3)
    assert macs_256 / macs_224 == pytest.approx((256 / 224) ** 2, rel=0.01)  # convolutions follow pixels
