"""Mode and label metrics: the PacGAN/VEEGAN mode count on 2-D mixtures, class coverage and KL divergence of
predicted-label histograms (digits: 10 classes; stacked-digits: 1,000 modes)."""

from __future__ import annotations

import math

import torch


def mode_metrics(points: torch.Tensor, centres: torch.Tensor, std: float) -> dict[str, float]:
    """PacGAN's definition: a sample is high quality when it lies within 3 std of its nearest mode; a mode is
    captured when it is the nearest mode of at least one high-quality sample.

    points (N, 2), centres (K, 2). Returns modes (captured, of K), high_quality (percent of samples) and
    kl_modes (KL of the high-quality samples' mode histogram to uniform; left out when none is high quality, as
    it is undefined, so that every value reported is a finite number).
    """
    d = torch.cdist(points.double(), centres.double())  # (N, K)
    nearest_d, nearest = d.min(dim=1)
    good = nearest_d <= 3 * std
    counts = torch.bincount(nearest[good], minlength=centres.shape[0])  # (K,)
    k = centres.shape[0]
    out = {"modes": float((counts > 0).sum()), "high_quality": float(good.double().mean() * 100)}
    if int(counts.sum()):
        out["kl_modes"] = kl_to_reference(counts, torch.full((k,), 1.0 / k))
    return out


def kl_to_reference(counts: torch.Tensor, reference: torch.Tensor) -> float:
    """KL(p ‖ q) in nats of the histogram `counts` (K,) to the distribution `reference` (K,); empty bins of p add
    nothing; a bin that p fills and q does not makes it infinite."""
    p = counts.double() / counts.sum()
    q = reference.double() / reference.sum()
    mask = p > 0
    if bool((q[mask] == 0).any()):
        return math.inf
    return float((p[mask] * (p[mask] / q[mask]).log()).sum())


def label_metrics(predicted: torch.Tensor, num_classes: int, reference: torch.Tensor | None = None) -> dict[str, float]:
    """Classes covered (of num_classes) and KL of the predicted-label histogram to `reference` (a histogram or a
    distribution over the classes; uniform when None). predicted: (N,) integer labels."""
    counts = torch.bincount(predicted.long(), minlength=num_classes)  # (K,)
    ref = torch.full((num_classes,), 1.0) if reference is None else reference.double()
    return {"covered": float((counts > 0).sum()), "kl": kl_to_reference(counts, ref)}


def stacked_mode_ids(digits: torch.Tensor) -> torch.Tensor:
    """Per-channel digits (N, 3) of stacked-digits images → mode ids (N,) in 0..999, R as hundreds, B as units."""
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
