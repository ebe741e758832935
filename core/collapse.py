"""The collapse watch: two cheap signs that a GAN is collapsing, which the training loop reports as it trains.

- `collapse_suspected`: D's loss near zero over the last stats reports while G's loss climbs: D wins and G gets no
  signal. The loop warns once and reports the `collapse_suspected` series (1 while suspected).
- `spread`: the mean pairwise distance of a batch. The fixed-seed grid samples' spread over the real data's is the
  `sample_diversity` metric; a collapsed generator maps every latent to a few outputs, so below
  COLLAPSE_DIVERSITY the loop warns.

Neither draws random numbers, so watching never changes a run.
"""

from __future__ import annotations

import collections

import torch

# Samples compared (of the grid, and of the real data), and the fraction of the real data's spread below which the
# loop warns of mode collapse.
DIVERSITY_SAMPLES = 64
COLLAPSE_DIVERSITY = 0.2
# The stats reports the loss watch looks back over.
RECENT_REPORTS = 10


def collapse_suspected(kind: str, recent: collections.deque[tuple[float, float]]) -> bool:
    """Whether the (loss_d, loss_g) of the last full window of reports show D's loss near zero while G's has
    climbed; only for the losses whose D loss is bounded below by zero."""
    if kind not in ("minimax", "nonsaturating", "lsgan") or len(recent) < recent.maxlen:  # type: ignore[operator]
        return False
    d_recent = sum(d for d, _ in list(recent)[-5:]) / 5
    g_then, g_now = recent[0][1], recent[-1][1]
    return d_recent < 0.05 and g_now > 2.0 * max(g_then, 0.5) and g_now > 3.0


def spread(x: torch.Tensor) -> float:
    """Mean pairwise L2 distance of a batch of samples (B, ...), in float64."""
    flat = x.detach().reshape(len(x), -1).to("cpu", torch.float64)  # (B, D)
    if len(flat) < 2:
        return 0.0
    distances = torch.cdist(flat, flat)  # (B, B)
    return float(distances.sum() / (len(flat) * (len(flat) - 1)))
