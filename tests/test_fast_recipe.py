"""The fast ImageNet recipe (FFCV's ResNet-50 config): its cyclic lr set at every step, label
smoothing, no weight decay on BatchNorm, and progressive resizing of a streamed dataset's crops."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from test_streams import write_folder
from torch.optim.optimizer import register_optimizer_step_post_hook

from layerlth import TrialConfig
from layerlth.data.stream_data import StreamData
from layerlth.foundations.recipes import get_recipe
from layerlth.models.cifar_resnet import cifar_resnet
from layerlth.tickets.validate import validate
from layerlth.training.loop import train
from layerlth.training.steps import EagerStep

FAST = get_recipe("imagenet_fast")


def test_the_cyclic_schedule_rises_to_its_peak_at_epoch_2_then_falls_to_0():
    assert FAST.lr_at(0) == pytest.approx(1.7e-4)
    assert FAST.lr_at(1) == pytest.approx((1.7e-4 + 1.7) / 2)
    assert FAST.lr_at(2) == pytest.approx(1.7)
    assert FAST.lr_at(9) == pytest.approx(1.7 * 7 / 14)
    assert FAST.lr_at(16) == 0.0
    assert FAST.scaled(batch_size=1024).lr == pytest.approx(1.7 / 4)  # lr x batch / 4096


def test_crops_are_160_px_to_epoch_11_and_192_px_from_epoch_12():
    assert [FAST.train_size(e, 256) for e in range(16)] == [160] * 12 + [192] * 4
    assert get_recipe("imagenet").train_size(5, 224) == 224  # no progressive resizing: the trial's size


def test_batchnorm_weights_and_biases_are_not_decayed():
    model = cifar_resnet(20, 10)
    decayed, plain = FAST.optimizer(model).param_groups[1], FAST.optimizer(model).param_groups[0]
    norms = [p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    others = [p for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for p in m.parameters()]
    assert plain["weight_decay"] == 0.0 and plain["params"] == norms
    assert decayed["weight_decay"] == 1e-4 and decayed["params"] == others  # the convs and fc
    assert len(get_recipe("he2016").optimizer(model).param_groups) == 1  # other recipes: as before


def test_the_training_loss_is_label_smoothed():
    torch.manual_seed(0)
    model, x, y = torch.nn.Linear(4, 3), torch.randn(8, 4), torch.randint(3, (8,))
    expected = F.cross_entropy(model(x), y, label_smoothing=0.1).item() * 8
    step = EagerStep(model, torch.optim.SGD(model.parameters(), lr=0.1), False, smoothing=0.1)
    step.start_epoch("cpu")
    step.step(x, y)
    assert step.totals()[0] == pytest.approx(expected, rel=1e-6)


def test_a_run_sets_the_lr_every_step_and_grows_its_crops(cifar_fixture, tmp_path):
    folder = write_folder(cifar_fixture, tmp_path, train=128, val=32, size=48)
    data = StreamData(folder, image_size=48, workers=0)
    # two epochs, 32 px crops in the first and 64 px in the second; evaluation at the trial's 48 px
    recipe = replace(FAST.scaled(epochs=2, batch_size=32), peak_epochs=1, train_sizes=(32, 64),
                     resize_ramp=(0.25, 0.5))
    model, shapes, lrs = cifar_resnet(8, 10), [], []
    model.register_forward_pre_hook(lambda module, args: shapes.append((module.training, args[0].shape[-1])))
    hook = register_optimizer_step_post_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    try:
        train(model, data, recipe, seed=1)
    finally:
        hook.remove()
    trained = [size for training, size in shapes if training]
    assert trained == [32] * 4 + [64] * 4 and {size for training, size in shapes if not training} == {48}
    lr = recipe.lr
    expected = [recipe.lr_at(e + s / 4) for e in range(2) for s in range(4)]
    assert lrs == pytest.approx(expected) and lrs[0] == pytest.approx(1e-4 * lr) and lrs[4] == pytest.approx(lr)


def test_progressive_resizing_needs_a_dataset_that_streams():
    config = TrialConfig(kind="dense", arch="resnet20", dataset="cifar10", recipe="imagenet_fast", p=0)
    with pytest.raises(ValueError, match="resizes its training crops"):
        validate(config)
