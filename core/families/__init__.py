"""Model families: what differs between kinds of GAN, one module each, side by side.

A family owns its networks and optimizers (`build`), what one training step does with them (`train_step`), its
sample grid and the sampler its evaluation draws from. The training loop (core/train.py) owns what every family
shares: seeding, data order, precision, EMA, the learning-rate schedule, exact-resume state, evaluation, events,
grids and checkpoints on their cadence, divergence and stop checks. It hands a family's `train_step` a `Step`.

Families: `noise` (latents → images or 2-D points: unconditional, class-conditional, cluster-conditioned).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch


class Batch(NamedTuple):
    indices: torch.Tensor  # (B,) the samples' positions in the dataset
    x: torch.Tensor  # (B, C, H, W) images in [-1, 1] (channels-last in memory), or (B, 2) points
    labels: torch.Tensor | None  # (B,) int64, when the dataset has labels


# A step's stats: detached scalar tensors (synced only when reported) or plain floats.
StepStats = dict[str, torch.Tensor | float]


@dataclass(frozen=True)
class Step:
    """What the loop hands a family's `train_step`: where the run is, and the loop's data and precision."""

    step: int  # 1-based
    done: float  # the fraction of the run before this step (0 at the first), for schedules
    want_stats: bool  # the loop reports this step's stats: measure what costs a sync (gradient norms) only then
    device: torch.device
    next_batch: Callable[[], Batch]  # the next real batch in the run's data order
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]  # the run's precision, for forward passes
