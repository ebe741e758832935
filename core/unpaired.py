"""Unpaired datasets for image-to-image translation between two domains (CycleGAN): images of domain A and images
of domain B, with no pairing between them.

An `UnpairedDataset` is a `core.datasets.Dataset` of domain A's training images (so the loop's data order, batches
and checkpoints treat it as any image dataset) that also holds domain B's, `domain_b(indices)`, and a held-out
split of each domain that training never sees, for evaluation. Labels are kept for evaluation only.

Built-in: `digits-printed`. Domain A is the handwritten `digits` (the digits classifier's train split for training,
its held-out split held out). Domain B is printed digits drawn with Pillow's built-in font
(`ImageFont.load_default(size)`, size 18 to 26 px), white on black at 32 px: each glyph centred by its ink box,
offset by -3 to 3 px on each axis, rotated by -10 to 10 degrees (BILINEAR), then resized with BILINEAR to the run's
size when it is not 32 px. B's two splits are drawn apart, each from its own fixed seed and each holding every digit
equally often: PRINTED_TRAIN training digits (200 of each) and PRINTED_HELD_OUT held-out ones (50 of each). The
held-out split is balanced on its own because it is what the evaluator's `fd_digits` translates and reads against
handwritten digits held in equal proportions (core/metrics/unpaired.py): a held-out set drawn in unequal proportions
raises that distance by itself, whatever the translations (docs/benchmarks.md, "CycleGAN on digits-printed").

Uploaded (`unpaired_...`, core/uploads.py: trainA/ and trainB/, testA/ and testB/ held out when given): resized to
the run's size as uploaded images are; no labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from core.datasets import DATA_SEED, Dataset, digit_bank
from core.paired import resized_upload

PRINTED_SIZE = 32  # the side printed digits are drawn at
PRINTED_TRAIN, PRINTED_HELD_OUT = 2000, 500
FONT_SIZES = (18, 26)  # inclusive
MAX_OFFSET = 3  # px, each axis
MAX_ROTATION = 10.0  # degrees


@dataclass
class UnpairedDataset(Dataset):
    """Domain A's training images in `store` (N, C, H, W), domain B's in `other` (M, C_B, H, W), both float32 in
    [-1, 1] (uint8 for an upload); the held-out images of each domain and their labels in `held_a`, `held_b`,
    `held_a_labels`, `held_b_labels`."""

    other: torch.Tensor | None = None
    other_labels: torch.Tensor | None = None
    held_a: torch.Tensor | None = None
    held_a_labels: torch.Tensor | None = None
    held_b: torch.Tensor | None = None
    held_b_labels: torch.Tensor | None = None

    @property
    def b_channels(self) -> int:
        assert self.other is not None
        return int(self.other.shape[1])

    @property
    def b_size(self) -> int:
        assert self.other is not None
        return int(self.other.shape[0])

    def domain_b(self, indices: torch.Tensor) -> torch.Tensor:
        """Domain B's training images (B, C_B, H, W) at `indices` (B,)."""
        assert self.other is not None
        x = self.other[indices.to(self.other.device, non_blocking=True)]
        return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x

    def to(self, device: torch.device | str) -> UnpairedDataset:
        """This dataset with its tensors on `device`."""
        return self._moved(device, "other", "other_labels", "held_a", "held_a_labels", "held_b", "held_b_labels")

    def info(self) -> dict[str, int | str]:
        """What a checkpoint records about the data: a Dataset's facts (of domain A), the pairing and B's channels."""
        return super().info() | {"pairing": "unpaired", "b_channels": self.b_channels}


def printed_digits(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` printed digits (n, 1, 32, 32) in [-1, 1], white on black, and their labels (n,), each digit n/10 times
    in a shuffled order; see the module docstring for how they are drawn."""
    if n % 10:
        raise ValueError(f"printed_digits: n {n} is not a multiple of 10, so the digits cannot be equally often")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10)
    fonts = {size: ImageFont.load_default(size) for size in range(FONT_SIZES[0], FONT_SIZES[1] + 1)}
    images = np.zeros((n, PRINTED_SIZE, PRINTED_SIZE), dtype=np.float32)
    centre = PRINTED_SIZE / 2
    for i, label in enumerate(labels):
        font = fonts[int(rng.integers(FONT_SIZES[0], FONT_SIZES[1] + 1))]
        dx, dy = (int(v) for v in rng.integers(-MAX_OFFSET, MAX_OFFSET + 1, size=2))
        angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
        canvas = Image.new("L", (PRINTED_SIZE, PRINTED_SIZE), 0)
        draw = ImageDraw.Draw(canvas)
        left, top, right, bottom = draw.textbbox((0, 0), str(label), font=font)  # the glyph's ink box
        at = (centre + dx - (left + right) / 2, centre + dy - (top + bottom) / 2)
        draw.text(at, str(label), fill=255, font=font)
        canvas = canvas.rotate(angle, resample=Image.Resampling.BILINEAR, center=(centre + dx, centre + dy))
        images[i] = np.asarray(canvas, dtype=np.float32)
    x = torch.from_numpy(images / 127.5 - 1.0).unsqueeze(1)  # (n, 1, 32, 32)
    return x, torch.from_numpy(labels.astype(np.int64))


def _resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, 1, S, S) in [-1, 1] resized to `size` with Pillow BILINEAR, as the digits are."""
    if x.shape[-1] == size:
        return x
    out = [np.asarray(Image.fromarray(im[0].numpy()).resize((size, size), Image.Resampling.BILINEAR)) for im in x]
    return torch.from_numpy(np.stack(out)).clamp_(-1, 1).unsqueeze(1)


def digits_printed(image_size: int) -> UnpairedDataset:
    """The built-in `digits-printed` at `image_size`: handwritten digits (A) and printed digits (B)."""
    from core.metrics.digits_data import digits_split_indices

    digits, digit_labels = digit_bank(image_size)  # (N, 1, S, S), (N,)
    train_idx, held_idx = (torch.from_numpy(i) for i in digits_split_indices())
    printed, printed_labels = printed_digits(PRINTED_TRAIN, seed=DATA_SEED + 2000)
    held_b, held_b_labels = printed_digits(PRINTED_HELD_OUT, seed=DATA_SEED + 2001)
    printed, held_b = _resized(printed, image_size), _resized(held_b, image_size)  # (M, 1, S, S), (M', 1, S, S)
    return UnpairedDataset(
        name="digits-printed",
        kind="images",
        store=digits[train_idx].contiguous(),
        labels=digit_labels[train_idx],
        num_classes=10,
        channels=1,
        image_size=image_size,
        class_names=[str(i) for i in range(10)],
        other=printed,
        other_labels=printed_labels,
        held_a=digits[held_idx].contiguous(),
        held_a_labels=digit_labels[held_idx],
        held_b=held_b,
        held_b_labels=held_b_labels,
    )


def uploaded_domains(name: str, dataset_dir: Path, image_size: int) -> UnpairedDataset:
    """An uploaded unpaired dataset at `image_size`: its training images kept as uint8, its held-out ones float32."""
    from core import uploads

    a, b, held_a, held_b = uploads.read_domains(dataset_dir)  # (N, S, S, C_A), (M, S, S, C_B) uint8, indices
    x, y = resized_upload(a, image_size), resized_upload(b, image_size)  # (N, C_A, S', S'), (M, C_B, S', S') uint8
    train_a, train_b = (torch.from_numpy(np.setdiff1d(np.arange(len(v)), h)) for v, h in ((a, held_a), (b, held_b)))
    return UnpairedDataset(
        name=name,
        kind="images",
        store=x[train_a].contiguous(),
        labels=None,
        num_classes=0,
        channels=int(x.shape[1]),
        image_size=image_size,
        other=y[train_b].contiguous(),
        held_a=x[torch.from_numpy(held_a)].float() / 127.5 - 1.0,
        held_b=y[torch.from_numpy(held_b)].float() / 127.5 - 1.0,
    )
