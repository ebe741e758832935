"""Cluster conditioning (`model.clusters`): k-means clusters of the real images stand in for class labels.

An unconditional generator has to map one connected latent space onto data made of separate modes (ten digits,
a thousand stacked triples), so some of its samples fall between the modes. A conditional generator does not:
each label is its own piece. Cluster conditioning gives an unlabeled run the same: the real images are split
into k clusters once, before training (k-means on the pixels, `cluster_images`), the cluster ids condition G and D
as labels would, and every fake draws its cluster at the real data's frequencies. The self-conditioned GAN
(Liu et al. 2020) does this with clusters of D's features, re-clustered as D learns; these are pixel clusters,
fixed for the run and kept in its checkpoints so that a resume trains on the same ones.

The generator picks each sample's cluster from its latent (`clusters_of`), so that G(z) stays a function of z
alone and every caller that samples an unconditional generator works unchanged: the pick is a hash of z into
[0, 1) and the inverse of the clusters' cumulative frequencies, uniform whatever the truncation of z.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

MAX_CLUSTER_PIXELS = 16  # k-means sees the images average-pooled to at most this side
KMEANS_ITERATIONS = 100


def cluster_images(images: torch.Tensor, k: int, *, seed: int) -> torch.Tensor:
    """k-means cluster ids (N,) int64 of images (N, C, H, W), from k-means++ seeded by `seed`; a ValueError when
    there are fewer images than clusters."""
    from sklearn.cluster import KMeans

    n = images.shape[0]
    if n < k:
        raise ValueError(f"model.clusters: {k} clusters need at least {k} images; this dataset has {n}")
    x = images.detach().float().cpu()
    side = x.shape[-1]
    if side > MAX_CLUSTER_PIXELS:
        x = F.adaptive_avg_pool2d(x, MAX_CLUSTER_PIXELS)  # (N, C, 16, 16)
    flat = x.reshape(n, -1).numpy().astype(np.float64)  # (N, C * S * S)
    km = KMeans(n_clusters=k, n_init=1, max_iter=KMEANS_ITERATIONS, random_state=seed, algorithm="lloyd")
    ids = km.fit_predict(flat)
    return torch.from_numpy(ids.astype(np.int64))


def cluster_cdf(ids: torch.Tensor, k: int) -> torch.Tensor:
    """The cumulative frequencies (k,) float64 of cluster ids (N,), ending at exactly 1."""
    counts = torch.bincount(ids.cpu(), minlength=k).double()
    cdf = counts.cumsum(0) / counts.sum()
    cdf[-1] = 1.0
    return cdf


def clusters_of(z: torch.Tensor, cdf: torch.Tensor) -> torch.Tensor:
    """The cluster (B,) int64 of each latent (B, Z): u = frac(1000 · Σ z / √Z), in float64, is uniform in [0, 1)
    for Gaussian or truncated z (Σ z / √Z spreads over many units, 1000 · it over thousands of periods), and the
    cluster is the first whose cumulative frequency exceeds u."""
    s = z.detach().double().sum(1) * (1000.0 / math.sqrt(z.shape[1]))  # (B,)
    u = s - s.floor()  # (B,) in [0, 1)
    ids = torch.searchsorted(cdf.to(u.device, torch.float64), u, right=True)
    return ids.clamp_(max=cdf.shape[0] - 1)
