"""Paired datasets for image-to-image translation: each sample is an input image and its target image.

A `PairedDataset` is a `core.datasets.Dataset` of the training targets (so the loop's data order, batches and
checkpoints treat it as any image dataset) that also holds the matching inputs, `inputs(indices)`, and a held-out
split of pairs that training never sees, for the translation metrics (core/metrics/paired.py).

Built-in: `digits-edges`. Each digit as `digits` renders it at the run's size (scikit-learn's 8x8 digits, resized
with Pillow BILINEAR) is the target; its input is the Sobel gradient magnitude of that image (replicated borders,
so the flat background has none), divided by its maximum and mapped to [-1, 1]. The held-out pairs are the digits'
20 % split that the shipped digits classifier was checked on (core/metrics/digits_data.py), so the classifier's
reading of the outputs measures them on digits it was not trained on either.

Uploaded (`paired_...`, core/uploads.py: A/ and B/ folders or side-by-side AB images): the inputs are A, the targets
B, both resized to the run's size as uploaded images are (`center_crop_resize`); the held-out pairs are the ones the
upload set aside (`held_out` in its index.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.datasets import Dataset, center_crop_resize, digit_bank

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


@dataclass
class PairedDataset(Dataset):
    """Targets in `store` (N, C, H, W), inputs in `source` (N, C_in, H, W), both float32 in [-1, 1] (uint8 for an
    upload); the held-out pairs (float32) in `held_source`, `held_target` and their labels in `held_labels`."""

    source: torch.Tensor | None = None
    held_source: torch.Tensor | None = None
    held_target: torch.Tensor | None = None
    held_labels: torch.Tensor | None = None

    @property
    def source_channels(self) -> int:
        assert self.source is not None
        return int(self.source.shape[1])

    def inputs(self, indices: torch.Tensor) -> torch.Tensor:
        """The inputs (B, C_in, H, W) of the training pairs at `indices` (B,), as `batch` gives their targets."""
        assert self.source is not None
        x = self.source[indices.to(self.source.device, non_blocking=True)]
        return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x

    def to(self, device: torch.device | str) -> PairedDataset:
        """This dataset with its tensors on `device`."""
        return self._moved(device, "source", "held_source", "held_target", "held_labels")

    def info(self) -> dict[str, int | str]:
        """What a checkpoint records about the data: a Dataset's facts, the pairing and the inputs' channels."""
        return super().info() | {"pairing": "paired", "source_channels": self.source_channels}


def sobel_gradients(x: torch.Tensor) -> torch.Tensor:
    """The Sobel derivatives d/dx and d/dy of every channel of images (N, C, H, W), with replicated borders:
    (N, C, 2, H, W)."""
    n, c, h, w = x.shape
    kernels = torch.stack([SOBEL_X, SOBEL_X.T]).unsqueeze(1).to(x.device, x.dtype)  # (2, 1, 3, 3)
    padded = F.pad(x.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")  # (N·C, 1, H + 2, W + 2)
    return F.conv2d(padded, kernels).reshape(n, c, 2, h, w)


def sobel_magnitude(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """The Sobel gradient magnitude of every channel of images (N, C, H, W), with replicated borders: (N, C, H, W).
    A loss passes a small `eps` (added under the square root) so that its gradient stays finite on flat areas, where
    the plain magnitude's square root has an infinite derivative."""
    return (sobel_gradients(x).square().sum(2) + eps).sqrt()


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """Each image's Sobel magnitude over its own maximum, mapped from [0, 1] to [-1, 1]: (N, C, H, W)."""
    mag = sobel_magnitude(images.float())  # (N, C, H, W)
    peak = mag.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)  # (N, 1, 1, 1)
    return mag / peak * 2.0 - 1.0


def digits_edges(image_size: int) -> PairedDataset:
    """The built-in `digits-edges` at `image_size`: the digits' train split as training pairs, the held-out split as
    the evaluation pairs."""
    from core.metrics.digits_data import digits_split_indices

    images, labels = digit_bank(image_size)  # (N, 1, S, S) in [-1, 1], (N,)
    edges = edge_map(images)  # (N, 1, S, S)
    train_idx, held_idx = (torch.from_numpy(i) for i in digits_split_indices())
    return PairedDataset(
        name="digits-edges",
        kind="images",
        store=images[train_idx].contiguous(),
        labels=labels[train_idx],
        num_classes=10,
        channels=1,
        image_size=image_size,
        class_names=[str(i) for i in range(10)],
        source=edges[train_idx].contiguous(),
        held_source=edges[held_idx].contiguous(),
        held_target=images[held_idx].contiguous(),
        held_labels=labels[held_idx],
    )


def uploaded_pairs(name: str, dataset_dir: Path, image_size: int) -> PairedDataset:
    """An uploaded paired dataset at `image_size`: its training pairs kept as uint8, its held-out pairs as float32."""
    from core import uploads

    source, target, held = uploads.read_pairs(dataset_dir)  # (N, S, S, C_A), (N, S, S, C_B) uint8, (H,)
    x, y = (resized_upload(images, image_size) for images in (source, target))  # (N, C, S', S') uint8
    train = torch.from_numpy(np.setdiff1d(np.arange(len(target)), held))
    held_idx = torch.from_numpy(held)
    return PairedDataset(
        name=name,
        kind="images",
        store=y[train].contiguous(),
        labels=None,
        num_classes=0,
        channels=int(y.shape[1]),
        image_size=image_size,
        source=x[train].contiguous(),
        held_source=x[held_idx].float() / 127.5 - 1.0,
        held_target=y[held_idx].float() / 127.5 - 1.0,
    )


def resized_upload(images: np.ndarray, size: int) -> torch.Tensor:
    """Uploaded images (N, S, S, C) uint8 at the run's size, as a (N, C, size, size) uint8 tensor."""
    out = np.stack([center_crop_resize(im, size) for im in images])  # (N, size, size, C)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2).contiguous()
