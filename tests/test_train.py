import copy

import pytest
import torch

from layerlth import build_model
from layerlth.data import synthetic
from layerlth.foundations.recipes import RECIPES, get_recipe
from layerlth.training.loop import SaveWeights, train


def test_paper_and_he_schedules():
    paper = get_recipe("paper")
    lrs = [paper.lr_at(e) for e in (0, 99, 100, 149, 150, 199)]
    assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
    assert paper.nesterov and paper.batch_size == 128 and paper.weight_decay == 1e-4
    he = RECIPES["he2016"]
    assert he.milestone_epochs() == [82, 123] and he.scaled(epochs=10).milestone_epochs() == [5, 8]


def tiny():
    return synthetic(train=96, test=32, size=(3, 16, 16)), get_recipe("he2016").scaled(epochs=3, batch_size=32)


def test_training_is_reproducible_and_resumable_at_any_epoch():
    data, recipe = tiny()
    torch.manual_seed(0)
    straight = build_model("resnet20")
    start = copy.deepcopy(straight)
    history = train(straight, data, recipe, seed=5)
    # stop after epoch 1, then carry on with the same weights and optimizer: same result
    resumed = copy.deepcopy(start)
    optimizer = recipe.optimizer(resumed)
    train(resumed, data, recipe, seed=5, stop_epoch=1, optimizer=optimizer)
    rest = train(resumed, data, recipe, seed=5, start_epoch=1, optimizer=optimizer)
    assert [h["epoch"] for h in rest] == [2, 3]
    assert rest[-1]["test_acc"] == history[-1]["test_acc"]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_weights_are_saved_at_the_requested_epochs(tmp_path):
    data, recipe = tiny()
    model = build_model("resnet20")
    initial = copy.deepcopy(model.state_dict())
    seen = []
    train(model, data, recipe, callbacks=[SaveWeights([0, 2], tmp_path), lambda s: seen.append(s.epoch)])
    assert seen == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights_epoch0.pt", "weights_epoch2.pt"]
    saved = torch.load(tmp_path / "weights_epoch0.pt")
    assert all(torch.equal(saved[k], v) for k, v in initial.items())
