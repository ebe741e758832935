"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees, real or fake.

Ported from mit-han-lab/data-efficient-gans `DiffAugment_pytorch.py` (color, translation 1/8, cutout 1/2). The
randomness comes from torch's global generator, which a checkpoint saves, so resumed runs augment identically.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F


def parse_policy(policy: str) -> list[str]:
    """'color, translation' -> ['color', 'translation']."""
    return [p.strip() for p in policy.split(",") if p.strip()]


def make_augment(policy: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The augmentation function of a policy string, or None for the empty policy."""
    names = parse_policy(policy)
    if not names:
        return None

    def augment(x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, names)

    return augment


def diff_augment(x: torch.Tensor, policy: list[str]) -> torch.Tensor:
    """Apply the policy's augmentations in order to a batch (B, C, H, W)."""
    for name in policy:
        for fn in AUGMENTS[name]:
            x = fn(x)
    return x.contiguous()


def rand_brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def rand_saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def rand_contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def rand_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    shift_x, shift_y = int(h * ratio + 0.5), int(w * ratio + 0.5)
    translation_x = torch.randint(-shift_x, shift_x + 1, size=[b, 1, 1], device=x.device)
    translation_y = torch.randint(-shift_y, shift_y + 1, size=[b, 1, 1], device=x.device)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(b, device=x.device),
        torch.arange(h, device=x.device),
        torch.arange(w, device=x.device),
        indexing="ij",
    )
    grid_x = torch.clamp(grid_x + translation_x + 1, 0, h + 1)
    grid_y = torch.clamp(grid_y + translation_y + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])  # (B, C, H + 2, W + 2), zeros around
    return x_pad.permute(0, 2, 3, 1).contiguous()[grid_batch, grid_x, grid_y].permute(0, 3, 1, 2)  # (B, C, H, W)


def rand_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    cut_h, cut_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    offset_x = torch.randint(0, h + (1 - cut_h % 2), size=[b, 1, 1], device=x.device)
    offset_y = torch.randint(0, w + (1 - cut_w % 2), size=[b, 1, 1], device=x.device)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(b, device=x.device),
        torch.arange(cut_h, device=x.device),
        torch.arange(cut_w, device=x.device),
        indexing="ij",
    )
    grid_x = torch.clamp(grid_x + offset_x - cut_h // 2, min=0, max=h - 1)
    grid_y = torch.clamp(grid_y + offset_y - cut_w // 2, min=0, max=w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_x, grid_y] = 0
    return x * mask.unsqueeze(1)


AUGMENTS: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {
    "color": [rand_brightness, rand_saturation, rand_contrast],
    "translation": [rand_translation],
    "cutout": [rand_cutout],
}
