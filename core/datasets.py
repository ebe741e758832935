"""Training data: the built-in datasets, uploaded datasets, and the data order of a run.

Built-ins:
- `ring8`: 8 Gaussians evenly on the unit circle, std 0.01 (PacGAN's ring).
- `grid25`: 25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05 (PacGAN's grid).
- `digits`: scikit-learn's 1,797 real 8x8 handwritten digits, 0..16 scaled to [-1, 1], resized with Pillow
  BILINEAR to the run's image size, labels kept.
- `stacked-digits`: three random digits in the R, G and B channels, labelled 100 * r + 10 * g + b: 1,000 modes,
  built from the digits as Stacked MNIST is built from MNIST (Metz et al. 2017; Lin et al. 2018).
- `breast-cancer`, `wine`: scikit-learn's tables (core/tabular/data.py), their class as the categorical column
  `target`, 20 % of the rows held out of training; `mixed` and `credit`: 5,000-row mixed-type tables made from a
  seed (core/tabular/io.py: mixed_table, credit_table), each with a binary class `target`. Uploaded tables
  (`tbl_...`, core/tabular/upload.py) likewise.
- `digits-edges`: paired (core/paired.py): each digit's Sobel edges as the input, the digit as the target.
- `digits-printed`: unpaired (core/unpaired.py): handwritten digits (A) and digits printed with Pillow's font (B).
- `photos`: patches of scikit-learn's two sample photographs, for super-resolution (core/superres.py).

Uploaded translation datasets (`paired_...`, `unpaired_...`) are read by core/paired.py and core/unpaired.py.
Uploaded datasets (ids `ds_...`) are read through `core.uploads.read_images`, center-cropped and resized to the
run's image size once, and cached next to the dataset as `cache_{size}px.npz`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import torch
from PIL import Image

from core.config import BUILTIN_DATASETS, DATASET_ID_PATTERN, TABLE_ID_PATTERN, TableSource, uploaded_pairing
from core.layout import atomic_write

POINTS_PER_DATASET = 100_000  # the fixed sample that a 2-D run draws its batches from
STACKED_SIZE = 50_000  # stacked triples, as many as MNIST has training images
DATA_SEED = 20_180_000  # the seed of the built-in datasets themselves (not of a run)


@dataclass
class Dataset:
    """A dataset held in memory: `batch(indices)` gives `(x, labels)` on the dataset's device.

    Points are `(N, 2)` float32; images are stored as float32 in [-1, 1] (built-ins) or uint8 (uploads, to save
    memory) and always come out of `batch` and `data` as float32 `(B, C, H, W)` in [-1, 1].
    """

    name: str
    kind: str  # "points" or "images"
    store: torch.Tensor  # (N, 2) float32 | (N, C, H, W) float32 in [-1, 1] or uint8 | (M, 1, H, W) digit bank
    labels: torch.Tensor | None  # (N,) int64
    num_classes: int  # 0 when unlabeled
    channels: int  # 0 for points
    image_size: int  # 0 for points
    modes: torch.Tensor | None = None  # (M, 2) mode centres of the 2-D sets
    mode_std: float = 0.0  # std of each 2-D mode
    class_names: list[str] | None = None
    triples: torch.Tensor | None = None  # (N, 3) digit indices of stacked-digits; store is then the digit bank

    def __len__(self) -> int:
        return int(self.triples.shape[0]) if self.triples is not None else int(self.store.shape[0])

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The samples at `indices` (B,) as float32 and their labels (or None)."""
        indices = indices.to(self.store.device, non_blocking=True)
        labels = self.labels[indices] if self.labels is not None else None
        if self.triples is not None:
            picks = self.triples[indices]  # (B, 3)
            x = self.store[picks.flatten()].reshape(indices.shape[0], 3, self.image_size, self.image_size)
            return x, labels
        x = self.store[indices]
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        return x, labels

    @property
    def data(self) -> torch.Tensor:
        """Every sample as float32: (N, 2) or (N, C, H, W) in [-1, 1]. Materialises stacked-digits (large)."""
        if self.triples is None and self.store.dtype != torch.uint8:
            return self.store
        return self.batch(torch.arange(len(self)))[0]

    def to(self, device: torch.device | str) -> Dataset:
        """This dataset with its tensors on `device`."""
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return Dataset(
            name=self.name,
            kind=self.kind,
            store=self.store.to(device),
            labels=move(self.labels),
            num_classes=self.num_classes,
            channels=self.channels,
            image_size=self.image_size,
            modes=self.modes,
            mode_std=self.mode_std,
            class_names=self.class_names,
            triples=move(self.triples),
        )

    def _moved(self, device: torch.device | str, *tensors: str) -> Self:
        """A copy of this dataset (of its own class) with `store`, `labels`, `triples` and the optional tensor
        fields named in `tensors` on `device`."""
        moved = {name: getattr(self, name) for name in ("labels", "triples", *tensors)}
        return dataclasses.replace(
            self,
            store=self.store.to(device),
            **{name: t.to(device) if t is not None else None for name, t in moved.items()},
        )

    def fingerprint(self) -> str:
        """A SHA-256 (hex) of every tensor the dataset holds, training and held-out alike, with each field's name,
        dtype and shape: checkpoints record it so that a resume can tell that the data changed under the run (a
        built-in drawn differently by a newer version, an upload's cache rewritten)."""
        digest = hashlib.sha256()
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, torch.Tensor):
                continue
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{field.name}:{flat.dtype}:{tuple(value.shape)};".encode())
            digest.update(flat.view(torch.uint8).numpy().data)
        return digest.hexdigest()

    def info(self) -> dict[str, int | str]:
        """What a checkpoint records about the data: {"kind", "channels", "image_size", "num_classes"}."""
        return {
            "kind": self.kind,
            "channels": self.channels,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
        }


def load_dataset(
    name: str, *, image_size: int, dataset_dir: Path | str | None = None, table: TableSource | None = None
) -> Dataset:
    """Load a built-in dataset by name, or an uploaded one (`ds_...` images, `tbl_...` a table read with `table`'s
    column types and target) from `dataset_dir`, on the CPU."""
    if name in ("ring8", "grid25"):
        return _gaussian_mixture(name)
    if name == "digits":
        return _digits(image_size)
    if name == "stacked-digits":
        return _stacked_digits(image_size)
    if name == "digits-edges":
        from core.paired import digits_edges

        return digits_edges(image_size)
    if name == "digits-printed":
        from core.unpaired import digits_printed

        return digits_printed(image_size)
    if name == "photos":
        from core.superres import photos

        return photos(image_size)
    if BUILTIN_DATASETS.get(name, {}).get("kind") == "table":
        from core.tabular.data import builtin_dataset

        return builtin_dataset(name)
    if DATASET_ID_PATTERN.match(name):
        if dataset_dir is None:
            raise ValueError(f"dataset: {name} is an uploaded dataset but no dataset folder was given")
        if (pairing := uploaded_pairing(name)) is not None:
            from core.paired import uploaded_pairs
            from core.unpaired import uploaded_domains

            return (uploaded_pairs if pairing == "paired" else uploaded_domains)(name, Path(dataset_dir), image_size)
        if TABLE_ID_PATTERN.match(name):
            from core.tabular.data import table_dataset
            from core.tabular.upload import read_stored

            source = table or TableSource()
            return table_dataset(name, read_stored(Path(dataset_dir)), overrides=source.columns, target=source.target)
        return _uploaded(name, Path(dataset_dir), image_size)
    raise ValueError(f"dataset: unknown dataset {name!r}; use one of {', '.join(BUILTIN_DATASETS)} or a dataset id")


def mixture_modes(name: str) -> tuple[torch.Tensor, float]:
    """Mode centres (M, 2) and the std of each mode of ring8 or grid25."""
    if name == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([angles.cos(), angles.sin()], dim=1).float(), 0.01
    if name == "grid25":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis), 0.05
    raise ValueError(f"dataset: {name!r} is not a 2-D mixture")


def _gaussian_mixture(name: str) -> Dataset:
    modes, std = mixture_modes(name)
    gen = torch.Generator().manual_seed(DATA_SEED + len(modes))
    which = torch.randint(len(modes), (POINTS_PER_DATASET,), generator=gen)
    points = modes[which] + std * torch.randn(POINTS_PER_DATASET, 2, generator=gen)  # (N, 2)
    return Dataset(
        name=name,
        kind="points",
        store=points,
        labels=None,
        num_classes=0,
        channels=0,
        image_size=0,
        modes=modes,
        mode_std=std,
    )


def digit_bank(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits at `image_size`: images (N, 1, S, S) in [-1, 1] and labels (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 8.0 - 1.0  # (N, 8, 8), 0..16 -> [-1, 1]
    if image_size != 8:
        size = (image_size, image_size)
        images = np.stack([np.asarray(Image.fromarray(im).resize(size, Image.Resampling.BILINEAR)) for im in images])
    x = torch.from_numpy(np.ascontiguousarray(images)).clamp_(-1, 1).unsqueeze(1)  # (N, 1, S, S)
    return x, torch.from_numpy(digits.target.astype(np.int64))


def _digits(image_size: int) -> Dataset:
    images, labels = digit_bank(image_size)
    return Dataset(
        name="digits",
        kind="images",
        store=images,
        labels=labels,
        num_classes=10,
        channels=1,
        image_size=image_size,
        class_names=[str(i) for i in range(10)],
    )


def _stacked_digits(image_size: int) -> Dataset:
    bank, digit_labels = digit_bank(image_size)
    gen = torch.Generator().manual_seed(DATA_SEED + 1000)
    triples = torch.randint(bank.shape[0], (STACKED_SIZE, 3), generator=gen)  # (N, 3): R, G, B digit indices
    picked = digit_labels[triples]  # (N, 3)
    labels = picked[:, 0] * 100 + picked[:, 1] * 10 + picked[:, 2]
    return Dataset(
        name="stacked-digits",
        kind="images",
        store=bank.squeeze(1),  # (M, S, S)
        labels=labels,
        num_classes=1000,
        channels=3,
        image_size=image_size,
        class_names=[f"{i:03d}" for i in range(1000)],
        triples=triples,
    )


def _uploaded(name: str, dataset_dir: Path, image_size: int) -> Dataset:
    cache = dataset_dir / f"cache_{image_size}px.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            images, labels, class_names = f["images"], f["labels"], [str(c) for c in f["class_names"]]
    else:
        from core import uploads  # another engineer's module; imported only when an upload is trained

        raw, raw_labels, class_names = uploads.read_images(dataset_dir)  # (N, H, W, C) uint8 at stored size
        if len(raw) == 0:
            raise ValueError(f"dataset: {name} holds no images")
        images = np.stack([center_crop_resize(im, image_size) for im in raw])  # (N, S, S, C)
        labels = raw_labels if raw_labels is not None else np.zeros(0, dtype=np.int64)
        with atomic_write(cache) as f:
            np.savez(f, images=images, labels=labels, class_names=np.array(class_names, dtype=str))
    store = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()  # (N, C, S, S) uint8
    has_labels = labels.size > 0 and len(class_names) > 1
    return Dataset(
        name=name,
        kind="images",
        store=store,
        labels=torch.from_numpy(labels.astype(np.int64)) if has_labels else None,
        num_classes=len(class_names) if has_labels else 0,
        channels=int(store.shape[1]),
        image_size=image_size,
        class_names=class_names if has_labels else None,
    )


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Center-crop an (H, W, C) uint8 image to a square and resize it to (size, size, C) with Pillow BILINEAR."""
    h, w, c = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    pil = Image.fromarray(square[:, :, 0] if c == 1 else square)
    out = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
    return out.reshape(size, size, c)


class DataOrder:
    """Shuffled epochs of sample indices from a generator of its own, so that a resumed run sees the same data."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.gen)
        self.pos = 0

    def next(self, batch_size: int) -> torch.Tensor:
        """The next `batch_size` indices (B,), starting a new epoch whenever one runs out."""
        pieces = []
        need = batch_size
        while need > 0:
            if self.pos == self.n:
                self.perm = torch.randperm(self.n, generator=self.gen)
                self.pos = 0
            take = min(need, self.n - self.pos)
            pieces.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            need -= take
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "gen": self.gen.get_state(),
            "perm": self.perm.clone(),
            "pos": torch.tensor([self.pos], dtype=torch.int64),
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        if state["perm"].shape[0] != self.n:
            raise ValueError(
                f"the checkpoint was trained on {state['perm'].shape[0]} samples and the dataset now holds {self.n}: "
                "its data order cannot continue on data of another size; start a new run"
            )
        self.gen.set_state(state["gen"])
        self.perm = state["perm"].clone()
        self.pos = int(state["pos"][0])
