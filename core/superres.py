"""Super-resolution data: high-resolution images, their low-resolution inputs, and a held-out split.

Every image dataset serves super-resolution. The high-resolution image is the dataset's image at the run's size;
its low-resolution input is made from it, image by image, by Pillow's BICUBIC downscaling by `model.scale` (on the
image's 8-bit levels, as a low-resolution file would hold it). The bicubic baseline upscales that input back with
Pillow's BICUBIC.

An `SRDataset` is a `core.datasets.Dataset` of the training images (so the loop's data order, batches and
checkpoints treat it as any image dataset) that also holds `held`, high-resolution images training never sees, and
their inputs `held_low`. `sr_dataset(data, scale)` makes one of any image dataset: the built-in `photos` already is
one; any other holds out a fixed share of its images (`held_out_count`), chosen by the data seed.

Built-in `photos`: patches of scikit-learn's two sample photographs (`load_sample_images`: china.jpg and
flower.jpg, 427 x 640 px each), cut at their native resolution at the run's image size. The held-out patches
(HELD_PATCHES positions drawn from a seed of the data) come from the left 256 columns of each photo (china's trees
and the left of its pagoda, the flower's left petals and the leaves behind it), which no training patch touches;
training patches come from the right 384 columns (PHOTO_PATCHES positions drawn once from another seed, so every
run sees the same patches, in the order of its own seed). `downscaled_copies(data, factors)` adds training patches
cut from copies of that training region downscaled by each factor (Pillow's BICUBIC on the 8-bit photographs): the
same scenes with their detail finer per pixel, more training content where the two photographs give little.
`hold_aside(data, columns)` keeps the first columns of each photograph's training region (next to the held-out ones)
out of training and cuts ASIDE_PATCHES patches from them: photographs the run never sees that are not the held-out
ones, on which a run may choose what it must not choose on the held-out patches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from core.datasets import DATA_SEED, Dataset

PHOTO_HELD_COLUMNS = 256  # photos: columns [0, 256) are held out, [256, 640) train
PHOTO_PATCHES = 16_384  # training patch positions (one epoch)
HELD_PATCHES = 256  # held-out patch positions
ASIDE_PATCHES = 256  # patch positions in the columns hold_aside keeps out of training
HELD_SHARE, HELD_MAX, HELD_MIN = 0.1, 256, 8  # other datasets: 10 % of the images held out, 8 to 256 of them


def to_levels(x: torch.Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] as 8-bit levels (N, H, W, C) uint8."""
    levels = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return levels.permute(0, 2, 3, 1).numpy()


def from_levels(images: np.ndarray) -> torch.Tensor:
    """8-bit images (N, H, W, C) as float32 (N, C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def resize_bicubic(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] resized to (N, C, size, size) by Pillow's BICUBIC on their 8-bit levels,
    each channel on its own; on the CPU."""
    levels = to_levels(x)  # (N, H, W, C)
    out = np.empty((levels.shape[0], size, size, levels.shape[3]), dtype=np.uint8)
    for i, image in enumerate(levels):
        for c in range(image.shape[2]):
            plane = Image.fromarray(np.ascontiguousarray(image[:, :, c]), mode="L")
            out[i, :, :, c] = np.asarray(plane.resize((size, size), Image.Resampling.BICUBIC))
    return from_levels(out)


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Low-resolution inputs (N, C, S / scale, S / scale) of high-resolution images (N, C, S, S), on hr's device."""
    return resize_bicubic(hr, hr.shape[-1] // scale).to(hr.device)


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: inputs (N, C, s, s) upscaled to (N, C, scale·s, scale·s), on lr's device."""
    return resize_bicubic(lr, lr.shape[-1] * scale).to(lr.device)


@dataclass
class PhotoPatches(Dataset):
    """Square patches of photos, cut when a batch is drawn: `store` holds the photos (P, C, H, W) uint8,
    `positions` the patches (N, 3): photo, top, left."""

    positions: torch.Tensor | None = None

    def __len__(self) -> int:
        assert self.positions is not None
        return int(self.positions.shape[0])

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert self.positions is not None
        s = self.image_size
        picks = self.positions[indices.to(self.positions.device)].tolist()  # (B, 3)
        patches = [self.store[p, :, top : top + s, left : left + s] for p, top, left in picks]
        return torch.stack(patches).float() / 127.5 - 1.0, None  # (B, C, S, S)

    def to(self, device: torch.device | str) -> PhotoPatches:
        return self._moved(device, "positions")


@dataclass
class SRDataset(Dataset):
    """The training images of `base` at `train_idx` (a Dataset through `batch`), and the held-out high-resolution
    images `held` (M, C, S, S) in [-1, 1]; `held_low` (M, C, S / scale, S / scale) once `sr_dataset` set a scale;
    `aside` (K, C, S, S) in [-1, 1], high-resolution images of the training region kept out of training
    (`hold_aside`), or None."""

    base: Dataset | None = None
    train_idx: torch.Tensor | None = None  # (N,) positions in base
    held: torch.Tensor | None = None
    held_low: torch.Tensor | None = None
    scale: int = 0
    aside: torch.Tensor | None = None

    def __len__(self) -> int:
        assert self.train_idx is not None
        return int(self.train_idx.shape[0])

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert self.base is not None and self.train_idx is not None
        x, _ = self.base.batch(self.train_idx[indices.to(self.train_idx.device)])
        return x, None  # labels play no part in super-resolution

    @property
    def data(self) -> torch.Tensor:
        return self.batch(torch.arange(len(self)))[0]

    def to(self, device: torch.device | str) -> SRDataset:
        assert self.base is not None
        return dataclasses.replace(
            self._moved(device, "train_idx", "held", "held_low", "aside"), base=self.base.to(device)
        )

    def info(self) -> dict[str, int | str]:
        """A Dataset's facts, and the scale: what a checkpoint records about the data."""
        return super().info() | {"scale": self.scale}


def held_out_count(n: int) -> int:
    """How many of n images a non-photos dataset holds out: 10 %, at least 8 and at most 256; none below 16."""
    return 0 if n < 2 * HELD_MIN else min(HELD_MAX, max(HELD_MIN, round(HELD_SHARE * n)))


def sr_dataset(data: Dataset, scale: int) -> SRDataset:
    """`data` for super-resolution by `scale`: its held-out split (photos' own region; else `held_out_count` images
    picked by the data seed, on the CPU) and the held-out images' low-resolution inputs."""
    if data.kind != "images":
        raise ValueError(f"model.arch: srgan super-resolves images, and {data.name} holds {data.kind}")
    if not isinstance(data, SRDataset):
        n = len(data)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(DATA_SEED + 24))
        count = held_out_count(n)
        held_idx, train_idx = order[:count].sort().values, order[count:].sort().values
        data = SRDataset(
            name=data.name,
            kind="images",
            store=data.store[:0],
            labels=None,
            num_classes=0,
            channels=data.channels,
            image_size=data.image_size,
            base=data,
            train_idx=train_idx,
            held=data.batch(held_idx)[0].float(),
        )
    assert data.held is not None
    return dataclasses.replace(data, scale=scale, held_low=downscale(data.held, scale))


def photos(image_size: int) -> SRDataset:
    """The built-in `photos` at `image_size` (see the module docstring)."""
    from sklearn.datasets import load_sample_images

    pictures = np.stack(load_sample_images().images)  # (2, 427, 640, 3) uint8
    store = torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous()  # (2, 3, 427, 640)
    count, _, height, width = store.shape
    s = image_size
    if s > min(height, PHOTO_HELD_COLUMNS, width - PHOTO_HELD_COLUMNS):
        raise ValueError(f"model.image_size: photos has no room for {s} px patches in its held-out region")

    def positions(n: int, seed: int, left: int, right: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        which = torch.randint(count, (n,), generator=gen)
        top = torch.randint(height - s + 1, (n,), generator=gen)
        column = torch.randint(left, right - s + 1, (n,), generator=gen)
        return torch.stack([which, top, column], dim=1)  # (n, 3)

    def patches(n: int, seed: int, left: int, right: int) -> PhotoPatches:
        return PhotoPatches(
            name="photos",
            kind="images",
            store=store,
            labels=None,
            num_classes=0,
            channels=3,
            image_size=s,
            positions=positions(n, seed, left, right),
        )

    train = patches(PHOTO_PATCHES, DATA_SEED + 2400, PHOTO_HELD_COLUMNS, width)
    held = patches(HELD_PATCHES, DATA_SEED + 2401, 0, PHOTO_HELD_COLUMNS)
    return SRDataset(
        name="photos",
        kind="images",
        store=store[:0],
        labels=None,
        num_classes=0,
        channels=3,
        image_size=s,
        base=train,
        train_idx=torch.arange(PHOTO_PATCHES),
        held=held.batch(torch.arange(HELD_PATCHES))[0],
    )


def hold_aside(data: Dataset, columns: int) -> Dataset:
    """`photos` (before `sr_dataset` sets a scale) with the first `columns` columns of each photograph's training
    region kept out of training: the training patches that touch them are dropped (the others keep their positions,
    in their order), and `aside` holds ASIDE_PATCHES patches cut from those columns at positions drawn from a seed
    of the data. The held-out patches are unchanged; with 0 columns, `data` itself."""
    if not columns:
        return data
    base = data.base if isinstance(data, SRDataset) else None
    if not isinstance(base, PhotoPatches) or base.positions is None or data.name != "photos":
        raise ValueError(f"train.aside_columns: only photos has a training region to hold columns of, not {data.name}")
    s = data.image_size
    count, _, height, width = base.store.shape
    edge = PHOTO_HELD_COLUMNS + columns  # training patches start at this column or beyond
    if columns < s or width - edge < s:
        raise ValueError(f"train.aside_columns: {columns} columns hold no {s} px patch, or leave none to train on")
    kept = base.positions[base.positions[:, 2] >= edge]  # (N', 3)
    gen = torch.Generator().manual_seed(DATA_SEED + 2410)
    which = torch.randint(count, (ASIDE_PATCHES,), generator=gen)
    top = torch.randint(height - s + 1, (ASIDE_PATCHES,), generator=gen)
    left = torch.randint(PHOTO_HELD_COLUMNS, edge - s + 1, (ASIDE_PATCHES,), generator=gen)
    aside = dataclasses.replace(base, positions=torch.stack([which, top, left], dim=1))
    return dataclasses.replace(
        data,
        base=dataclasses.replace(base, positions=kept),
        train_idx=torch.arange(kept.shape[0]),
        aside=aside.batch(torch.arange(ASIDE_PATCHES))[0],
    )


def downscaled_copies(data: Dataset, factors: Sequence[float], aside: int = 0) -> Dataset:
    """`photos` (before `sr_dataset` sets a scale) with more training patches: for each factor, a copy of each
    photograph's training region (less its first `aside` columns, which `hold_aside` keeps out of training)
    downscaled by it, and patch positions drawn in that copy at the native region's density (its native patches / 2
    per photograph's room). The native patches keep their positions and indices and the held-out patches are
    unchanged; with no factors, `data` itself."""
    if not factors:
        return data
    base = data.base if isinstance(data, SRDataset) else None
    if not isinstance(base, PhotoPatches) or base.positions is None or data.name != "photos":
        raise ValueError(f"train.downscaled_copies: only photos has photographs to downscale, not {data.name}")
    s = data.image_size
    photos_store = base.store  # (P, C, H, W) uint8
    count, _, height, width = photos_store.shape
    start = PHOTO_HELD_COLUMNS + aside
    region = photos_store[:, :, :, start:]  # (P, C, H, W - start): the training region
    room = (height - s + 1) * (width - start - s + 1)  # positions in a native region
    native = base.positions.shape[0]
    copies, positions = [photos_store], [base.positions]
    for k, factor in enumerate(factors):
        h, w = round(region.shape[2] * factor), round(region.shape[3] * factor)
        if min(h, w) < s:
            raise ValueError(f"train.downscaled_copies: {factor} leaves {min(h, w)} px of photos, short of {s} px")
        small = torch.zeros_like(photos_store)  # (P, C, H, W): each copy at the top left, zeros beyond it
        for p in range(count):
            picture = Image.fromarray(region[p].permute(1, 2, 0).contiguous().numpy())
            resized = np.array(picture.resize((w, h), Image.Resampling.BICUBIC))  # (h, w, C)
            small[p, :, :h, :w] = torch.from_numpy(resized).permute(2, 0, 1)
        n = round(native / count * (h - s + 1) * (w - s + 1) / room) * count
        gen = torch.Generator().manual_seed(DATA_SEED + 2402 + k)
        which = torch.randint(count, (n,), generator=gen) + count * (k + 1)  # indices into the stacked store
        top = torch.randint(h - s + 1, (n,), generator=gen)
        left = torch.randint(w - s + 1, (n,), generator=gen)
        copies.append(small)
        positions.append(torch.stack([which, top, left], dim=1))  # (n, 3)
    patches = dataclasses.replace(base, store=torch.cat(copies), positions=torch.cat(positions))
    return dataclasses.replace(data, base=patches, train_idx=torch.arange(len(patches)))
