"""Sliced Wasserstein distance between Laplacian pyramids of two image sets (Karras et al. 2018, ProGAN's
`metrics/sliced_wasserstein.py`): at each pyramid level from full resolution down to 16 px, 7×7 neighbourhoods
are drawn at random, normalised per channel within their own set, and compared along random unit directions.
Values are reported ×1e3 as ProGAN reports them; it needs no feature network, so it works on any image data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_KERNEL_1D = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
MIN_RES = 16


def _blur(x: torch.Tensor) -> torch.Tensor:
    """5×5 binomial blur, per channel, reflect padding. (B, C, H, W) → same."""
    c = x.shape[1]
    k = torch.outer(_KERNEL_1D, _KERNEL_1D).to(x)[None, None].repeat(c, 1, 1, 1)  # (C, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=c)


def _down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[:, :, ::2, ::2]  # (B, C, H/2, W/2)


def _up(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    out = torch.zeros(b, c, h * 2, w * 2, dtype=x.dtype, device=x.device)
    out[:, :, ::2, ::2] = x * 4
    return _blur(out)  # (B, C, 2H, 2W)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass levels from full resolution down, the last one the low-pass residual."""
    pyramid = [x]
    for _ in range(1, levels):
        pyramid.append(_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - _up(pyramid[-1])
    return pyramid


def _descriptors(level: torch.Tensor, per_image: int, gen: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) → (B * per_image, C * 49) random 7×7 neighbourhoods, normalised per channel."""
    b, c, h, w = level.shape
    ys = torch.randint(0, h - 6, (b, per_image), generator=gen)
    xs = torch.randint(0, w - 6, (b, per_image), generator=gen)
    offsets = torch.arange(7)
    rows = (ys[:, :, None] + offsets)[:, :, :, None].expand(b, per_image, 7, 7)  # (B, P, 7, 7)
    cols = (xs[:, :, None] + offsets)[:, :, None, :].expand(b, per_image, 7, 7)
    flat = (rows * w + cols).reshape(b, 1, -1).expand(b, c, -1)  # (B, C, P*49)
    patches = level.reshape(b, c, h * w).gather(2, flat.to(level.device))  # (B, C, P*49)
    patches = patches.reshape(b, c, per_image, 49).permute(0, 2, 1, 3)  # (B, P, C, 49)
    patches = patches - patches.mean(dim=(0, 1, 3), keepdim=True)
    patches = patches / patches.std(dim=(0, 1, 3), keepdim=True).clamp_min(1e-8)
    return patches.reshape(b * per_image, c * 49)


def _sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, gen: torch.Generator, repeats: int, dirs: int) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the projected sets."""
    total = 0.0
    for _ in range(repeats):
        d = torch.randn(a.shape[1], dirs, generator=gen).to(a)
        d = d / d.norm(dim=0, keepdim=True)  # (D, dirs)
        pa = (d.T @ a.T).sort(dim=1).values  # (dirs, N), sorted along the contiguous axis
        pb = (d.T @ b.T).sort(dim=1).values
        total += float((pa - pb).abs().mean())
    return total / repeats


def swd(
    real: torch.Tensor, fake: torch.Tensor, *, per_image: int = 32, repeats: int = 4, dirs: int = 64, seed: int = 0
) -> dict[int, float]:
    """SWD ×1e3 per pyramid resolution between two equally sized image sets (B, C, H, W) in [-1, 1].

    ProGAN draws 128 neighbourhoods per image and 4 × 128 directions; the defaults here (32 and 4 × 64) keep an
    evaluation cheap on a CPU, so values are comparable between ganforge runs, not with ProGAN's tables."""
    if real.shape != fake.shape:
        raise ValueError(f"swd: both sets need the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    res = real.shape[-1]
    resolutions = []
    while res >= MIN_RES:
        resolutions.append(res)
        res //= 2
    if not resolutions:
        return {}
    gen = torch.Generator().manual_seed(seed)
    pyr_real = laplacian_pyramid(real.float(), len(resolutions))
    pyr_fake = laplacian_pyramid(fake.float(), len(resolutions))
    out: dict[int, float] = {}
    for r, lr, lf in zip(resolutions, pyr_real, pyr_fake, strict=True):
        da = _descriptors(lr, per_image, gen)
        db = _descriptors(lf, per_image, gen)
        out[r] = _sliced_wasserstein(da, db, gen, repeats, dirs) * 1e3
    return out
