"""Distances between a real and a generated sample set, on features (or on raw 2-D points).

- FID and KID through torchmetrics (`FrechetInceptionDistance`, `KernelInceptionDistance`) with our own feature
  module in place of Inception, so neither torch-fidelity nor torchvision is needed. The cached real statistics
  are loaded straight into the metric's state; the Fréchet distance is computed in float64, and when
  torchmetrics' result is not finite it is recomputed by `frechet_distance`, an eigendecomposition of symmetric
  matrices that stays real and finite for singular covariances.
- Improved precision and recall (Kynkäänniemi et al. 2019, k = 3) and density and coverage (Naeem et al. 2020,
  k = 5) from k-nearest-neighbour balls, in float64 on exact pairwise distances.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance


class Identity(nn.Module):
    """The 'feature extractor' handed to torchmetrics: features are computed beforehand, so it passes them on."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def feature_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) features → mean (D,) and unbiased covariance (D, D), both float64."""
    f = feats.double()
    mu = f.mean(0)
    centered = f - mu
    sigma = centered.T @ centered / (f.shape[0] - 1)
    return mu, sigma


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Fréchet distance between two Gaussians, in float64, by symmetric eigendecompositions:
    tr((Σ1 Σ2)^½) = Σ √λ over the eigenvalues λ of Σ1^½ Σ2 Σ1^½, which is symmetric positive semi-definite, so
    the result is real even when a covariance is singular (eigenvalues a rounding error below 0 are clipped).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if not (
        np.isfinite(mu1).all() and np.isfinite(mu2).all() and np.isfinite(sigma1).all() and np.isfinite(sigma2).all()
    ):
        raise ValueError("Fréchet distance: the statistics are not finite; the features contain NaN or infinity")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # Σ1^½
    inner = root1 @ sigma2 @ root1
    trace_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)
    return max(value, 0.0)


def fid(real_sum: torch.Tensor, real_cov_sum: torch.Tensor, n_real: int, fake_feats: torch.Tensor) -> float:
    """FID from the real set's cached sufficient statistics (sum (D,), sum of outer products (D, D), N) and the
    generated features (M, D), through torchmetrics in float64; `frechet_distance` if that is not finite."""
    dim = fake_feats.shape[1]
    metric = FrechetInceptionDistance(feature=Identity(dim), reset_real_features=False)
    metric.real_features_sum = real_sum.double().clone()
    metric.real_features_cov_sum = real_cov_sum.double().clone()
    metric.real_features_num_samples = torch.tensor(n_real, dtype=torch.long)
    metric.update(fake_feats.double(), real=False)
    value = float(metric.compute())
    if np.isfinite(value):
        return max(value, 0.0)
    mu_r = real_sum.double() / n_real
    sigma_r = (real_cov_sum.double() - n_real * torch.outer(mu_r, mu_r)) / (n_real - 1)
    mu_f, sigma_f = feature_stats(fake_feats)
    return frechet_distance(mu_r.numpy(), sigma_r.numpy(), mu_f.numpy(), sigma_f.numpy())


def kid(
    real_feats: torch.Tensor, fake_feats: torch.Tensor, *, subsets: int = 50, seed: int = 0
) -> tuple[float, float | None]:
    """KID (polynomial-kernel MMD², unbiased) mean and std over `subsets` random subsets of up to 1,000 samples,
    through torchmetrics; the subsets are drawn under a fixed seed without touching the caller's RNG. The kernels
    run in float32 (their sums agree with float64 to about 1e-6 relative) because they dominate the cost.

    When both sets have no more samples than a subset holds, every subset is the whole of both: the value is
    computed once and the std is None (a spread over identical subsets would read as a false 0)."""
    subset_size = min(1000, real_feats.shape[0], fake_feats.shape[0])
    whole = subset_size == real_feats.shape[0] == fake_feats.shape[0]
    subsets = 1 if whole else subsets
    with warnings.catch_warnings():
        # It warns that it keeps every feature in memory: that is the point, and they are few here.
        warnings.filterwarnings("ignore", message="Metric `Kernel Inception Distance` will save", category=UserWarning)
        metric = KernelInceptionDistance(
            feature=Identity(real_feats.shape[1]), subsets=subsets, subset_size=subset_size
        )
    metric.update(real_feats.float(), real=True)
    metric.update(fake_feats.float(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), None if whole else float(std)


CHUNK = 1024


def _pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, D), (M, D) → (N, M) Euclidean distances in float64."""
    return torch.cdist(a.double(), b.double())


def knn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set, itself excluded. (N,) float64."""
    out = [_pairwise(feats[i : i + CHUNK], feats).kthvalue(k + 1, dim=1).values for i in range(0, len(feats), CHUNK)]
    return torch.cat(out)


def precision_recall(real_feats: torch.Tensor, fake_feats: torch.Tensor, *, k: int = 3) -> tuple[float, float]:
    """Improved precision (fakes inside the real manifold) and recall (reals inside the fake manifold), where a
    manifold is the union of balls reaching each point's k-th nearest neighbour (Kynkäänniemi et al. 2019)."""
    r_real = knn_radii(real_feats, k)  # (N,)
    r_fake = knn_radii(fake_feats, k)  # (M,)
    fake_in = torch.zeros(len(fake_feats), dtype=torch.bool)
    real_in = torch.zeros(len(real_feats), dtype=torch.bool)
    for i in range(0, len(real_feats), CHUNK):
        d = _pairwise(real_feats[i : i + CHUNK], fake_feats)  # (c, M)
        fake_in |= (d <= r_real[i : i + CHUNK, None]).any(dim=0)
        real_in[i : i + CHUNK] = (d <= r_fake[None, :]).any(dim=1)
    return float(fake_in.double().mean()), float(real_in.double().mean())


def density_coverage(real_feats: torch.Tensor, fake_feats: torch.Tensor, *, k: int = 5) -> tuple[float, float]:
    """Density (how many real k-NN balls hold each fake, over k; 1 for matching distributions, can exceed 1) and
    coverage (fraction of real balls holding at least one fake), Naeem et al. 2020."""
    r_real = knn_radii(real_feats, k)  # (N,)
    hits = 0.0
    covered = torch.zeros(len(real_feats), dtype=torch.bool)
    for i in range(0, len(real_feats), CHUNK):
        inside = _pairwise(real_feats[i : i + CHUNK], fake_feats) < r_real[i : i + CHUNK, None]  # (c, M)
        hits += float(inside.double().sum())
        covered[i : i + CHUNK] = inside.any(dim=1)
    return hits / (k * len(fake_feats)), float(covered.double().mean())
