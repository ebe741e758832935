"""Perceptual path length (Karras et al. 2019, StyleGAN §4.2): how much the images change along short steps in the
latent space, so lower is a smoother generator.

End-point sampling, as the paper reports it: for latents z0, z1 (and one class for both when conditional; for a
cluster-conditioned generator, the cluster that z0 picks, for both ends), the path starts at t = 0 and the step is
ε = 1e-4 toward the other end,

    PPL = E[ d(G(l(0)), G(l(ε))) / ε² ],

where, for a style-based generator (space "w"), l(t) = lerp(w0, w1, t) of the mapped latents, untruncated and the
synthesis run with its fixed noise; for any other generator (space "z"), l(t) = slerp(z0, z1, t). The paper's d is
LPIPS on VGG16; here d is the squared distance of the shipped digits classifier's 128-d features, each normalised
to unit length (a colour image's channels are compared one by one and averaged), so the metric is named
`ppl_{space}_digits` and is reported only on the digits datasets. As the reference implementation does, the
samples below the 1st and above the 99th percentile are dropped before the mean. The latents and classes come from
a generator of their own seeded by `seed`, so the same generator gives the same value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

EPSILON = 1e-4
BATCH = 256
FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # images (B, C, H, W) -> unit features (B, F)


@dataclass
class PathSampler:
    """The generator a path length is measured on: its latent size and how many classes it is conditioned on."""

    generator: nn.Module
    z_dim: int
    num_classes: int = 0

    @property
    def space(self) -> str:
        """w for a style-based generator (it has a mapping and a synthesis network), else z."""
        style = callable(getattr(self.generator, "synthesis", None)) and hasattr(self.generator, "mapping")
        return "w" if style else "z"

    def pairs(self, z0: torch.Tensor, z1: torch.Tensor, labels: torch.Tensor | None, eps: float) -> torch.Tensor:
        """Images at the path's start and ε along it: (2B, C, H, W), the starts first."""
        g = self.generator
        if labels is None and getattr(g, "cluster_cdf", None) is not None:
            # A cluster-conditioned generator picks a latent's cluster from a hash-like function of it: the path
            # keeps the cluster of its start, as latent walks do; in W both ends are mapped in that cluster, as a
            # conditional path maps both ends with one class (a step toward another cluster's w would measure the
            # distance between clusters, not the smoothness within one).
            labels = g.clusters_of(z0)  # type: ignore[operator]
        if self.space == "w":
            # Both ends are mapped with the start's label id: its class, its cluster, or its cluster within its class.
            ids = g.label_ids(z0, labels)  # type: ignore[operator]
            w = g.mapping(torch.cat([z0, z1]), None, ids=None if ids is None else ids.repeat(2))  # type: ignore[operator]
            w0, w1 = w.chunk(2)  # (B, W) each
            ws = torch.cat([w0, w0.lerp(w1, eps)])  # (2B, W)
            return g.synthesis(ws[:, None].expand(-1, int(g.num_ws), -1))  # type: ignore[operator, arg-type, no-any-return]
        zs = torch.cat([z0, slerp(z0, z1, eps)])  # (2B, Z)
        return g(zs, None if labels is None else labels.repeat(2))  # type: ignore[no-any-return]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """The point at t along the great-circle arc from each row of a to the row of b (norms interpolated linearly)."""
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua * ub).sum(1, keepdim=True).clamp(-1.0, 1.0))  # (B, 1)
    sin = torch.sin(omega).clamp_min(1e-7)
    direction: torch.Tensor = (torch.sin((1.0 - t) * omega) * ua + torch.sin(t * omega) * ub) / sin
    norm: torch.Tensor = (1.0 - t) * na + t * nb  # (B, 1)
    return direction * norm  # (B, Z)


@torch.no_grad()
def path_length(
    path: PathSampler,
    features: FeatureFn,
    *,
    n: int,
    seed: int = 0,
    eps: float = EPSILON,
    device: str | torch.device = "cpu",
) -> float:
    """The perceptual path length of `path`'s generator over n end-point samples (see the module docstring)."""
    if n < 2:
        raise ValueError(f"path length needs at least 2 samples, not {n}")
    was_training = path.generator.training
    path.generator.eval()  # fixed noise, BatchNorm's running statistics
    try:
        return _path_length(path, features, n=n, seed=seed, eps=eps, device=device)
    finally:
        path.generator.train(was_training)


def _path_length(
    path: PathSampler, features: FeatureFn, *, n: int, seed: int, eps: float, device: str | torch.device
) -> float:
    gen = torch.Generator().manual_seed(int(seed))
    z0 = torch.randn(n, path.z_dim, generator=gen)  # (n, Z)
    z1 = torch.randn(n, path.z_dim, generator=gen)
    labels = torch.randint(path.num_classes, (n,), generator=gen) if path.num_classes else None
    dist = []
    for start in range(0, n, BATCH):
        part = slice(start, start + BATCH)
        lb = None if labels is None else labels[part].to(device)
        images = path.pairs(z0[part].to(device), z1[part].to(device), lb, eps).float()  # (2B, C, H, W)
        f = features(images)  # (2B, F)
        a, b = f.chunk(2)
        dist.append(((a - b).square().sum(1) / eps**2).double().cpu())
    d = torch.cat(dist).numpy()
    lo, hi = np.percentile(d, 1, method="lower"), np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())
