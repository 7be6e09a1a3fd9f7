"""Criteria that rate the blocks of a trained network from what they compute on real batches
(Algorithm 1), each as the paper's authors compute it in their layer-pruning code (DeepPruning's
`criteria_layer.py`, DepthWisePruning's `score`). Each returns {block: score}, higher = more
important; the net runs in eval mode. "Without the block" means the block removed (y = x), which is
what the authors get by zeroing the BN that ends the block's residual branch."""

import numpy as np
import torch
import torch.nn.functional as F

from layerlth.criteria.activations import block_outputs, residual_sums
from layerlth.criteria.weights import prunable_weights
from layerlth.measure.similarity import linear_cka, penultimate_features
from layerlth.models import remove_blocks

PLS_COMPONENTS = 4  # DepthWisePruning's main.py
PLS_POOL = 8  # its AveragePooling2D(pool_size=8) before the PLS


def _per_image(collected):
    """{block: mean over images} from per-batch (sum over the batch's images, image count)."""
    return {name: sum(s for s, _ in values) / sum(n for _, n in values) for name, values in collected.items()}


def hrank(model, batches, blocks):
    """HRank as a layer score (authors' `rank`, after Lin et al. 2020): the rank of each channel's
    map of relu(block output), averaged over images, divided by the map's side max(h, w), averaged
    over channels. Full-rank maps score 1 at any resolution, so no stage is favoured by its size."""

    def ranks(output):
        maps = output.relu().float()
        return torch.linalg.matrix_rank(maps).double().sum(0) / max(maps.shape[-2:]), len(maps)

    return {name: float(per_channel.mean()) for name, per_channel in _per_image(block_outputs(model, batches, blocks, ranks)).items()}


def expectabs(model, batches, blocks):
    """expectABS (authors' `expectedABS`, after DropNet, Min & Vahdat 2020): mean |relu(block
    output)| over images, positions and channels."""

    def sums(output):
        return output.relu().abs().double().sum() / output[0].numel(), len(output)

    return {name: float(mean) for name, mean in _per_image(block_outputs(model, batches, blocks, sums)).items()}


@torch.no_grad()
def kl(model, batches, blocks):
    """KL(q || p) = sum_c q_c (log q_c - log p_c), averaged over images, with p the softmax of the
    dense net and q that of the net without the block (authors' `klDivergence`, after CURL): how
    much the prediction moves when the block goes. An identity block scores zero."""
    batches = list(batches)
    log_p = [F.log_softmax(model(x).double(), 1) for x, _ in batches]
    count = sum(len(y) for _, y in batches)
    scores = {}
    for name in blocks:
        without = remove_blocks(model, [name]).eval()
        # kl_div(input, target) sums exp(target) * (target - input): here q * (log q - log p)
        total = sum(F.kl_div(dense, F.log_softmax(without(x).double(), 1), log_target=True, reduction="sum")
                    for (x, _), dense in zip(batches, log_p))
        scores[name] = float(total / count)
    return scores


@torch.no_grad()
def cka(model, batches, blocks):
    """1 - linear CKA between the penultimate features (the last linear layer's input) of the dense
    net and of the net without the block (authors' `CKA`): how much the block changes the final
    representation. High = important; an identity block scores zero."""
    batches = list(batches)
    dense = penultimate_features(model, batches)
    return {
        name: 1 - linear_cka(dense, penultimate_features(remove_blocks(model, [name]), batches)) for name in blocks
    }


def vip(features, targets, n_components=PLS_COMPONENTS):
    """Variable importance in projection of each feature column, from scikit-learn's PLS."""
    from sklearn.cross_decomposition import PLSRegression

    pls = PLSRegression(n_components=min(n_components, *features.shape), scale=True).fit(features, targets)
    t, w, q = pls.x_scores_, pls.x_weights_, pls.y_loadings_
    explained = (t**2).sum(0) * (q**2).sum(0)  # variance of Y each component explains
    weights = (w / np.linalg.norm(w, axis=0)) ** 2
    return np.sqrt(features.shape[1] * (weights @ explained) / explained.sum())


def _pooled(residual):
    """8x8 average pooling, flattened; a map smaller than 8 is pooled whole."""
    return F.avg_pool2d(residual.double(), min(PLS_POOL, *residual.shape[-2:])).flatten(1).cpu()


@torch.no_grad()
def pls(model, batches, blocks, n_components=PLS_COMPONENTS):
    """PLS+VIP (Jordao et al. 2020, authors' DepthWisePruning `score`): for each block on its own,
    its residual sum f(x) + x (before the last ReLU), 8x8 average-pooled and flattened; one PLS of
    those features against one-hot labels; the block's score is the mean VIP of its features."""
    batches = list(batches)
    pooled = residual_sums(model, batches, blocks, _pooled)
    labels = torch.cat([y for _, y in batches]).cpu()
    num_classes = int(model(batches[0][0][:1]).shape[1])
    targets = F.one_hot(labels, num_classes).double().numpy()
    return {name: float(vip(torch.cat(parts).numpy(), targets, n_components).mean()) for name, parts in pooled.items()}


def l1(model, batches=()):
    """L1 norm of the block's weights (per-weight |theta|, aggregated). Biased towards early
    stages; the paper rejects it and it is here for completeness."""
    return {name: w.detach().abs() for name, w in prunable_weights(model).items()}
