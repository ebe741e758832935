"""The digits' train / held-out split that the classifier is trained and checked on.

The split is a fixed function of scikit-learn's bundled 1,797 digits: stratified, 20 % held out, seed 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitsSplit:
    train_images: torch.Tensor  # (N, 1, 8, 8) float32 in [-1, 1]
    train_labels: torch.Tensor  # (N,) int64
    heldout_images: torch.Tensor
    heldout_labels: torch.Tensor
    description: dict[str, Any]


def digits_split() -> DigitsSplit:
    """scikit-learn's digits (0..16 grey levels) scaled to [-1, 1], split into train and held-out."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, heldout_idx = digits_split_indices()
    return DigitsSplit(
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        heldout_images=images[heldout_idx],
        heldout_labels=labels[heldout_idx],
        description={
            "source": "sklearn.datasets.load_digits",
            "heldout_fraction": HELDOUT_FRACTION,
            "stratified": True,
            "seed": SPLIT_SEED,
            "train": len(train_idx),
            "heldout": len(heldout_idx),
        },
    )


def digits_split_indices() -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and held-out indices into scikit-learn's digits order (the order `core.datasets` keeps)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    target = load_digits().target
    train_idx, heldout_idx = train_test_split(
        np.arange(len(target)), test_size=HELDOUT_FRACTION, random_state=SPLIT_SEED, stratify=target
    )
    return np.sort(train_idx), np.sort(heldout_idx)
