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

Per channel (`model.cluster_channels`), each image channel is clustered on its own, into k clusters each, for
data whose channels are separate pieces (stacked-digits: a digit in each of R, G and B). A sample's label is then
its channels' clusters read as the digits of one number in base k (Σ_c id_c · k^c), G and D embed it as the sum
of one code per channel (core.networks.GroupEmbedding), and G draws each channel's cluster independently, at
that channel's frequencies. Clusters of whole images would keep the channels' combinations to the ones that k
pixel clusters hold; with a cluster per channel every combination is drawn, as often as the channels' own
frequencies make it.

Within classes (`model.class_clusters`, stylegan2), a conditional run splits each class into k clusters: a real's
label id is class · k + its cluster (k-means within its class), and G, given a class, picks the cluster from the
latent as above, at that class's frequencies. A generator conditioned on the class alone can collapse within each
class on small data; codes of its own for each part of a class keep that class's variety, as the clusters keep an
unlabeled run's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

MAX_CLUSTER_PIXELS = 16  # k-means sees the images average-pooled to at most this side
KMEANS_ITERATIONS = 100


def cluster_images(images: torch.Tensor, k: int, *, seed: int, per_channel: bool = False) -> torch.Tensor:
    """k-means cluster ids (N,) int64 of images (N, C, H, W), from k-means++ seeded by `seed`; a ValueError when
    there are fewer images than clusters. With `per_channel`, each channel c is clustered on its own (seeded by
    seed + c) and the id is Σ_c id_c · k^c."""
    if per_channel:
        channels = images.shape[1]
        ids = torch.stack([cluster_images(images[:, c : c + 1], k, seed=seed + c) for c in range(channels)], 1)
        return (ids * k ** torch.arange(channels)).sum(1)  # (N, C) -> (N,)
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


def group_digits(ids: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """The per-group clusters (..., groups) of labels (...) that read them as `groups` digits in base k."""
    powers = k ** torch.arange(groups, device=ids.device)  # (G,)
    return torch.div(ids.unsqueeze(-1), powers, rounding_mode="floor") % k


def cluster_counts(ids: torch.Tensor, k: int, groups: int = 1) -> torch.Tensor:
    """How many samples (groups, k) int64 each group's (channel's) clusters hold, of cluster ids (N,)."""
    return torch.stack([torch.bincount(part, minlength=k) for part in group_digits(ids.cpu(), k, groups).T])


def cluster_cdf(ids: torch.Tensor, k: int, groups: int = 1) -> torch.Tensor:
    """The cumulative frequencies (groups · k,) float64 of cluster ids (N,): for each group (channel) of
    `groups`, its clusters' cumulative frequencies, each ending at exactly 1."""
    return _cumulative(cluster_counts(ids, k, groups))  # (G, K) -> (G · K,)


def _cumulative(counts: torch.Tensor) -> torch.Tensor:
    """Each row's cumulative frequencies of counts (R, K), flattened (R · K,) float64, each row ending at exactly 1
    (a row of no counts: uniform)."""
    counts = counts.double()
    counts[counts.sum(1) == 0] = 1.0
    cdf = counts.cumsum(1) / counts.sum(1, keepdim=True)
    cdf[:, -1] = 1.0
    return cdf.flatten()


def _signs(z_dim: int, g: int) -> torch.Tensor:
    """Group g's ±1 weights (Z,) over the latent for g ≥ 1 (group 0 sums z): Walsh-like square waves of period
    2^g, so the groups' projections of z are (near) orthogonal, hence independent for Gaussian z."""
    i = torch.arange(z_dim)
    return 1.0 - 2.0 * ((i >> (g - 1)) & 1).double()


def clusters_of(z: torch.Tensor, cdf: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """The cluster (B,) int64 of each latent (B, Z): u = frac(1000 · Σ z / √Z), in float64, is uniform in [0, 1)
    for Gaussian or truncated z (Σ z / √Z spreads over many units, 1000 · it over thousands of periods), and the
    cluster is the first whose cumulative frequency exceeds u. With groups (cdf (groups · k,)), group g draws its
    own u from the projection of z on its signs (`_signs`) and the label is Σ_g id_g · k^g."""
    zd = z.detach().double()
    k = cdf.shape[0] // groups
    cdfs = cdf.to(zd.device, torch.float64).reshape(groups, k)
    label = torch.zeros(z.shape[0], dtype=torch.int64, device=zd.device)
    for g in range(groups):
        projection = zd.sum(1) if g == 0 else zd @ _signs(z.shape[1], g).to(zd.device)  # (B,)
        ids = torch.searchsorted(cdfs[g].contiguous(), _unit(projection, z.shape[1]), right=True).clamp_(max=k - 1)
        label += ids * k**g
    return label


def _unit(projection: torch.Tensor, z_dim: int) -> torch.Tensor:
    """u = frac(1000 · projection / √Z) (B,) float64 in [0, 1), of a projection (B,) of latents of size Z."""
    s = projection.double() * (1000.0 / math.sqrt(z_dim))
    return s - s.floor()


# Clusters within classes (`model.class_clusters`): a conditional run whose classes are each split into k clusters.
# Its label ids are class · k + cluster; G is given a class and picks the cluster within it from the latent.


def cluster_within_classes(images: torch.Tensor, labels: torch.Tensor, k: int, *, seed: int) -> torch.Tensor:
    """Label ids (N,) int64 = class · k + the image's k-means cluster within its class, of images (N, C, H, W) with
    class labels (N,); a ValueError naming the smallest class when one has fewer than k images."""
    labels = labels.cpu()
    classes = int(labels.max()) + 1
    sizes = torch.bincount(labels, minlength=classes)
    if int(sizes.min()) < k:
        smallest = int(sizes.argmin())
        raise ValueError(
            f"model.class_clusters: {k} clusters in each class need {k} images in each; class {smallest} has "
            f"{int(sizes[smallest])}"
        )
    ids = torch.empty(labels.shape[0], dtype=torch.int64)
    for c in range(classes):
        members = labels == c
        ids[members] = c * k + cluster_images(images[members.to(images.device)], k, seed=seed)
    return ids


def class_cluster_cdf(ids: torch.Tensor, classes: int, k: int) -> torch.Tensor:
    """Each class's cumulative cluster frequencies (classes · k,) float64 of label ids (N,) = class · k + cluster,
    each class's ending at exactly 1 (a class with no images: uniform)."""
    return _cumulative(torch.bincount(ids.cpu(), minlength=classes * k).reshape(classes, k))


def clusters_within(z: torch.Tensor, labels: torch.Tensor, cdf: torch.Tensor, k: int) -> torch.Tensor:
    """The label id (B,) int64 = class · k + cluster of each latent (B, Z) given its class (B,): the cluster is
    picked from the latent as `clusters_of` picks it, at its class's frequencies in cdf (classes · k,)."""
    zd = z.detach().double()
    labels = labels.to(zd.device).long()
    rows = cdf.to(zd.device, torch.float64).reshape(-1, k)[labels]  # (B, k)
    u = _unit(zd.sum(1), z.shape[1])[:, None]  # (B, 1)
    ids = torch.searchsorted(rows.contiguous(), u, right=True).clamp_(max=k - 1)[:, 0]  # (B,)
    return labels * k + ids
