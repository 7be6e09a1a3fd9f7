import numpy as np
import pytest
import torch

from layerlth import build_model, score_blocks
from layerlth.criteria.trained import vip
from layerlth.criteria.weights import prunable_weights

LAST = "stage3.block3"


def batches(n=2, size=32):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(10, (size,), generator=g)) for _ in range(n)]


def with_zero_output(name=LAST):
    """y = relu(f(x) + x - 1e6) = 0: a block whose output is zero (BN in eval mode)."""
    model = build_model("resnet20").eval()
    with torch.no_grad():
        model.get_submodule(name).bn2.bias.fill_(-1e6)
    return model


def with_identity(name="stage2.block2"):
    """conv2 = 0 makes f(x) = 0, and x >= 0 after the previous ReLU: y = relu(x) = x exactly."""
    model = build_model("resnet20").eval()
    with torch.no_grad():
        model.get_submodule(name).conv2.weight.zero_()
    return model, name


@pytest.mark.parametrize("criterion", ["expectabs", "hrank"])
def test_a_block_whose_output_is_zero_scores_lowest(criterion):
    scores = score_blocks(with_zero_output(), criterion, batches())
    assert scores[LAST] == 0 and min(scores, key=scores.get) == LAST
    assert all(s > 0 for name, s in scores.items() if name != LAST)


def test_an_exact_identity_block_has_zero_kl_effect():
    model, identity = with_identity()
    scores = score_blocks(model, "kl", batches())
    assert scores[identity] == pytest.approx(0, abs=1e-9)
    assert all(s > 1e-6 for name, s in scores.items() if name != identity)


def test_l1_is_the_sum_of_absolute_weights():
    model = build_model("resnet20")
    scores = score_blocks(model, "l1")
    expected = sum(float(w.detach().abs().sum()) for w in prunable_weights(model.get_submodule("stage2.block2")).values())
    assert scores["stage2.block2"] == pytest.approx(expected)
    assert scores["stage1.block2"] < scores["stage3.block2"]  # the early-stage bias the paper rejects


def test_vip_ranks_the_informative_feature_first():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    targets = np.eye(3)[labels]
    features = rng.normal(size=(300, 5))
    features[:, 2] += 3 * labels  # only feature 2 carries the label
    importance = vip(features, targets)
    assert importance.argmax() == 2 and importance[2] > 1 > importance[[0, 1, 3, 4]].max()
    assert (importance**2).sum() == pytest.approx(5)  # VIPs square-sum to the feature count


def test_pls_scores_every_block_from_its_channels():
    model = build_model("resnet20").eval()
    scores = score_blocks(model, "pls", batches(3))
    assert len(scores) == 6 and all(s > 0 for s in scores.values())


# The authors' formulas, written out here on numpy from their code (DeepPruning criteria_layer.py,
# DepthWisePruning main.py), to hold our scores against. "Without the block" is done their way:
# zeroing the BN that ends the block's residual branch, so f(x) = 0 and the block passes x through.


@pytest.fixture(scope="module")
def real_batches(cifar_fixture):
    """Two batches of 32 real CIFAR-10 training images, normalised per channel."""
    with np.load(cifar_fixture) as arrays:
        x, y = arrays["train_x"][:64].astype(np.float32), arrays["train_y"][:64].astype(np.int64)
    x = (x - x.mean((0, 2, 3), keepdims=True)) / x.std((0, 2, 3), keepdims=True)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    return [(x[:32], y[:32]), (x[32:], y[32:])]


@pytest.fixture(scope="module")
def net(real_batches):
    """resnet20 with BN statistics of real images (a net at init has mean 0 / var 1), in eval mode."""
    torch.manual_seed(0)
    model = build_model("resnet20")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    with torch.no_grad():
        for x, _ in real_batches:
            model(x)
    return model.eval()


def _inputs_of(model, name, batches):
    """The block's input for every image, by a hook of the test's own."""
    seen = []
    hook = model.get_submodule(name).register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    hook.remove()
    return torch.cat(seen)


def _residual_sum(model, name, batches):
    """bn2(conv2(relu(bn1(conv1(x))))) + x, the Keras `Add` output, recomputed from the block's input."""
    block, x = model.get_submodule(name), _inputs_of(model, name, batches)
    with torch.no_grad():
        return (block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))) + x).numpy().astype(np.float64)


def _zeroed(model, name):
    copy = __import__("copy").deepcopy(model)
    with torch.no_grad():
        bn = copy.get_submodule(name).bn2
        bn.weight.zero_(), bn.bias.zero_()
    return copy


def _logits(model, batches):
    with torch.no_grad():
        return np.concatenate([model(x).numpy().astype(np.float64) for x, _ in batches])


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _penultimate(model, batches):
    seen = []
    hook = model.fc.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    hook.remove()
    return torch.cat(seen).numpy().astype(np.float64)


def authors_hrank(model, name, batches):
    features = np.maximum(_residual_sum(model, name, batches), 0)  # relu(Add output)
    n, channels, h, w = features.shape
    scores = np.zeros(channels)
    for channel in range(channels):
        for feature in features:
            scores[channel] += np.linalg.matrix_rank(feature[channel].astype(np.float32))
    return float(np.mean(scores / n / max(w, h)))


def authors_kl(model, name, batches):
    p, q = _softmax(_logits(model, batches)), _softmax(_logits(_zeroed(model, name), batches))
    return float(np.mean(np.sum(q * (np.log(q) - np.log(p)), axis=1)))


def authors_cka(model, name, batches):
    x, y = _penultimate(model, batches), _penultimate(_zeroed(model, name), batches)
    x, y = x - x.mean(0, keepdims=True), y - y.mean(0, keepdims=True)
    similarity = np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    return float(1 - similarity)


def authors_pls(model, name, batches, n_components=4):
    from sklearn.cross_decomposition import PLSRegression

    summed = _residual_sum(model, name, batches).transpose(0, 2, 3, 1)  # NHWC, as Keras holds it
    n, h, w, c = summed.shape
    pooled = summed.reshape(n, h // 8, 8, w // 8, 8, c).mean((2, 4)).reshape(n, -1)  # AveragePooling2D(8), Flatten
    labels = np.concatenate([y.numpy() for _, y in batches])
    pls = PLSRegression(n_components=n_components).fit(pooled, np.eye(10)[labels])
    t, w_, q = pls.x_scores_, pls.x_weights_, pls.y_loadings_
    p, components = w_.shape
    s = np.diag(t.T @ t @ q.T @ q).reshape(components, -1)
    weights = (w_ / np.expand_dims(np.linalg.norm(w_, axis=0), axis=0)) ** 2
    return float(np.mean(np.sqrt(p * (weights @ s).ravel() / np.sum(s))))


AUTHORS = {"hrank": authors_hrank, "kl": authors_kl, "cka": authors_cka, "pls": authors_pls}


@pytest.mark.parametrize("criterion", sorted(AUTHORS))
def test_trained_criteria_compute_what_the_authors_compute(net, real_batches, criterion):
    scores = score_blocks(net, criterion, real_batches)
    expected = {name: AUTHORS[criterion](net, name, real_batches) for name in scores}
    assert scores == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert len(set(np.round(list(scores.values()), 6))) == len(scores)  # the scores rank the blocks


def test_hrank_is_not_capped_by_the_stage_resolution(net, real_batches):
    """Full-rank maps score about 1 at 32x32 and at 8x8; without the division by the side they
    scored about 32 and 8, so stage-3 blocks always went first."""
    model = __import__("copy").deepcopy(net)
    with torch.no_grad():
        for name in ("stage1.block2", "stage3.block2"):
            model.get_submodule(name).bn2.bias.fill_(100.0)  # relu passes everything: generic, full-rank maps
    scores = score_blocks(model, "hrank", real_batches)
    assert 0.9 < scores["stage1.block2"] <= 1 and 0.9 < scores["stage3.block2"] <= 1  # not 32 vs 8
    assert all(0 < s <= 1 for s in scores.values())


def test_kl_is_the_divergence_of_the_pruned_net_from_the_dense_one(net, real_batches):
    scores = score_blocks(net, "kl", real_batches)
    for name, score in scores.items():
        p, q = _softmax(_logits(net, real_batches)), _softmax(_logits(_zeroed(net, name), real_batches))
        reverse = float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))  # KL(dense || pruned), the old score
        assert score != pytest.approx(reverse, rel=1e-3)


def test_pls_fits_one_model_per_block(net, real_batches):
    """A block's PLS score does not depend on which other blocks are scored (a joint PLS's does)."""
    everything = score_blocks(net, "pls", real_batches)
    for name in ("stage1.block2", "stage3.block3"):
        assert score_blocks(net, "pls", real_batches, blocks=[name])[name] == pytest.approx(everything[name], rel=1e-9)


def test_cka_scores_an_identity_block_zero_and_others_above():
    model, identity = with_identity()
    scores = score_blocks(model, "cka", batches())
    assert scores[identity] == pytest.approx(0, abs=1e-9)
    assert all(s > 1e-6 for name, s in scores.items() if name != identity)
