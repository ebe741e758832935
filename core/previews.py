"""Preview grids of the built-in datasets that only core's loaders can make: digits-edges' pairs (each input beside
its target), digits-printed's two domains (handwritten, then printed) and the photo patches that super-resolution
trains on, each at the dataset's default image size, so that a preview shows what a run on the dataset sees.

They need torch, which the API process does not load: the API imports this module (torch is imported inside
`builtin_preview_png`) and makes the previews in its upload processes (api.offload).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.config import RunConfig
from core.uploads import interleaved_preview, preview_png

if TYPE_CHECKING:
    import torch

# The built-in datasets whose previews this module makes.
LOADED_PREVIEWS = ("digits-edges", "digits-printed", "photos")
PREVIEW_COUNT = 64


def builtin_preview_png(name: str) -> bytes:
    """The PNG preview of the built-in dataset `name` (one of LOADED_PREVIEWS)."""
    if name not in LOADED_PREVIEWS:
        raise ValueError(f"dataset: {name} has no loaded preview; use one of {', '.join(LOADED_PREVIEWS)}")
    from core.datasets import load_dataset
    from core.paired import PairedDataset
    from core.superres import SRDataset
    from core.unpaired import UnpairedDataset

    size = RunConfig.model_validate({"dataset": name}).model.image_size
    data = load_dataset(name, image_size=size)
    half = PREVIEW_COUNT // 2
    if isinstance(data, PairedDataset):
        assert data.source is not None
        return interleaved_preview(_pixels(data.source[:half]), _pixels(data.store[:half]), pairs=True)
    if isinstance(data, UnpairedDataset):
        assert data.other is not None
        return interleaved_preview(_pixels(data.store[:half]), _pixels(data.other[:half]), pairs=False)
    assert isinstance(data, SRDataset) and data.base is not None and data.train_idx is not None
    patches, _ = data.base.batch(data.train_idx[:PREVIEW_COUNT])  # (n, C, S, S) in [-1, 1]
    return preview_png(_pixels(patches), None, n=PREVIEW_COUNT)


def _pixels(images: torch.Tensor) -> np.ndarray:
    """Images (N, C, S, S) in [-1, 1] as uint8 (N, S, S, C), as generations write them."""
    from core.generate import to_uint8

    return to_uint8(images.float().numpy())
