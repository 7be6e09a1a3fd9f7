"""Criteria that rate the blocks of a trained network from what they output on real batches
(Algorithm 1). Each returns {block: score}, higher = more important. The net runs in eval mode."""

import numpy as np
import torch
import torch.nn.functional as F

from layerlth.criteria.activations import block_outputs
from layerlth.criteria.weights import prunable_weights
from layerlth.models import remove_blocks


def hrank(model, batches, blocks):
    """HRank (Lin et al. 2020): average rank of the block's output feature maps, over images and
    channels. Low-rank maps carry little information."""
    ranks = block_outputs(model, batches, blocks, lambda out: torch.linalg.matrix_rank(out.float()).double().mean())
    return {name: float(torch.stack(values).mean()) for name, values in ranks.items()}


def expectabs(model, batches, blocks):
    """expectABS (DropNet, Min & Vahdat 2020): mean absolute activation of the block's output."""
    means = block_outputs(model, batches, blocks, lambda out: out.abs().double().mean())
    return {name: float(torch.stack(values).mean()) for name, values in means.items()}


@torch.no_grad()
def kl(model, batches, blocks):
    """KL(p_dense || p_without_block) of the softmax outputs, averaged over images: how much the
    network's prediction changes when the block is taken out. An identity block scores zero."""
    batches = list(batches)
    reference = [F.log_softmax(model(x), 1) for x, _ in batches]
    scores = {}
    for name in blocks:
        without = remove_blocks(model, [name]).eval()
        divergences = [
            F.kl_div(F.log_softmax(without(x), 1), ref, log_target=True, reduction="batchmean")
            for (x, _), ref in zip(batches, reference)
        ]
        scores[name] = float(torch.stack(divergences).mean())
    return scores


def vip(features, targets, n_components=2):
    """Variable importance in projection of each feature column, from scikit-learn's PLS."""
    from sklearn.cross_decomposition import PLSRegression

    pls = PLSRegression(n_components=min(n_components, *features.shape), scale=True).fit(features, targets)
    t, w, q = pls.x_scores_, pls.x_weights_, pls.y_loadings_
    explained = (t**2).sum(0) * (q**2).sum(0)  # variance of Y each component explains
    weights = (w / np.linalg.norm(w, axis=0)) ** 2
    return np.sqrt(features.shape[1] * (weights @ explained) / explained.sum())


@torch.no_grad()
def pls(model, batches, blocks, n_components=2):
    """PLS+VIP (Jordao et al. 2020): PLS of all blocks' globally pooled outputs against one-hot
    labels; a block's score is the mean VIP of its channels."""
    batches = list(batches)
    pooled = block_outputs(model, batches, blocks, lambda out: out.float().mean(dim=(2, 3)).cpu())
    labels = torch.cat([y for _, y in batches]).cpu()
    num_classes = int(model(batches[0][0][:1]).shape[1])
    features = torch.cat([torch.cat(pooled[name]) for name in blocks], dim=1).double().numpy()
    importance = vip(features, F.one_hot(labels, num_classes).double().numpy(), n_components)
    widths = np.cumsum([0] + [pooled[name][0].shape[1] for name in blocks])
    return {name: float(importance[a:b].mean()) for name, a, b in zip(blocks, widths[:-1], widths[1:])}


def l1(model, batches=()):
    """L1 norm of the block's weights (per-weight |theta|, aggregated). Biased towards early
    stages; the paper rejects it and it is here for completeness."""
    return {name: w.detach().abs() for name, w in prunable_weights(model).items()}
