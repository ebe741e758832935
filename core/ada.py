"""Adaptive discriminator augmentation (ADA, Karras et al. 2020b, "Training Generative Adversarial Networks with
Limited Data"): every image D sees, real or fake, goes through the same differentiable pipeline, each of whose
transformations is applied to a sample with probability p; p follows how sure D is of the reals.

The pipeline, in order: x-flip, rotation by a multiple of 90°, integer translation (up to 1/8 of the side),
isotropic and anisotropic scaling (log2-normal, σ 0.2) — all composed into one affine map per sample and applied by a
single bilinear `grid_sample` with reflection padding (flips, quarter turns and whole-pixel shifts land on pixel
centres, so they resample exactly; scaling is bilinear, where the paper uses a wavelet filter) — then brightness
(+N(0, 0.2)), contrast (×2^N(0, 0.5) about the image's mean), saturation (×2^N(0, 1) about the pixel's channel mean,
RGB only) and cutout (a zeroed square of half the side). Its randomness comes from torch's global generator, which a
checkpoint saves, so a resumed run augments identically.

The heuristic r_t = E[sign(D(x_real))] over `INTERVAL` steps moves p by ±(batch · INTERVAL) / (1000 · `KIMG`) toward
the target (`train.ada_target`, 0.6): p can go from 0 to 1 within 500k images. p and the sign sums are tensors of the
checkpoint (`augment.p`, `augment.signs`) and p is reported as the stat `ada_p`. The stylegan2 family calls `observe`
with its D's logits on the reals; the noise family's `core.losses.discriminator_loss` calls it on any augmentation
that has it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.nn import functional as F

from core import checkpoint

INTERVAL = 4  # steps between adjustments of p
KIMG = 500  # thousands of images over which p can move from 0 to 1
TRANSLATE = 0.125  # the largest translation, as a fraction of the side
SCALE_STD = 0.2  # log2 standard deviation of the isotropic and anisotropic scalings
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2
SATURATION_STD = 1.0  # log2
CUTOUT = 0.5  # the side of the cutout square, as a fraction of the image's


def ada_augment(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The pipeline at probability `p` (a () tensor, so that no value leaves the device) on images (B, C, H, W)."""
    b, c, h, w = x.shape
    dev, dtype = x.device, torch.float32

    def chance() -> torch.Tensor:
        return torch.rand(b, device=dev) < p  # (B,) whether this transformation applies to each sample

    def lognormal(std: float) -> torch.Tensor:
        return torch.exp2(torch.randn(b, device=dev) * std)  # (B,)

    one = torch.ones(b, device=dev)
    # Geometric transformations: one matrix (B, 3, 3) from output to input coordinates in [-1, 1].
    flip = torch.where(chance(), -one, one)
    quarter = torch.randint(4, (b,), device=dev) * chance()  # (B,) turns of 90°
    angle = quarter.to(dtype) * (math.pi / 2)
    cos, sin = torch.cos(angle).round(), torch.sin(angle).round()  # exact 0 / ±1
    shift = torch.where(chance()[:, None], (torch.rand(b, 2, device=dev) * 2 - 1) * TRANSLATE, 0.0)  # (B, 2)
    shift = (shift * torch.tensor([w, h], device=dev)).round() * 2 / torch.tensor([w, h], device=dev)
    iso = torch.where(chance(), lognormal(SCALE_STD), one)
    aniso = torch.where(chance(), lognormal(SCALE_STD), one)
    sx, sy = iso * aniso, iso / aniso
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip * sx, -sin * sy
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip * sx, cos * sy
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)  # (B, H, W, 2)
    x = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # Colour transformations, per sample.
    x = x + torch.where(chance(), torch.randn(b, device=dev) * BRIGHTNESS_STD, 0.0)[:, None, None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    x = mean + (x - mean) * torch.where(chance(), lognormal(CONTRAST_STD), one)[:, None, None, None]
    if c == 3:
        gray = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
        x = gray + (x - gray) * torch.where(chance(), lognormal(SATURATION_STD), one)[:, None, None, None]

    # Cutout: zero a square of half the side around a random centre.
    centre = torch.rand(b, 2, 1, 1, device=dev)  # (B, 2, 1, 1) in [0, 1]
    ys = (torch.arange(h, device=dev, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=dev, dtype=dtype) + 0.5) / w
    inside = ((xs[None, None, :] - centre[:, 0]).abs() < CUTOUT / 2) & (
        (ys[None, :, None] - centre[:, 1]).abs() < CUTOUT / 2
    )  # (B, H, W)
    keep = ~(inside & chance()[:, None, None])
    return (x * keep[:, None].to(x.dtype)).contiguous()  # (B, C, H, W)


class AdaptiveAugment:
    """The pipeline with its probability p and the sign statistics that steer it."""

    def __init__(self, *, target: float, batch_size: int, device: torch.device) -> None:
        self.target = target
        self.step_size = batch_size * INTERVAL / (1000.0 * KIMG)
        self.p = torch.zeros((), device=device)
        self.signs = torch.zeros(2, device=device)  # (sum of sign(D(real)), count) since the last adjustment

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ada_augment(x, self.p).to(x.dtype)

    @torch.no_grad()
    def observe(self, real_logits: torch.Tensor) -> None:
        """Count the signs of D's logits on (augmented) reals."""
        count = self.signs.new_tensor(real_logits.numel())
        self.signs += torch.stack([real_logits.detach().float().sign().sum(), count])

    @torch.no_grad()
    def adjust(self, step: int) -> None:
        """Every INTERVAL steps, move p one step toward where r_t = E[sign(D(real))] meets the target."""
        if step % INTERVAL:
            return
        r_t = self.signs[0] / self.signs[1].clamp(min=1)
        self.p.copy_((self.p + torch.sign(r_t - self.target) * self.step_size).clamp(0.0, 1.0))
        self.signs.zero_()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"augment.p": self.p, "augment.signs": self.signs}

    def restore(self, path: Path) -> None:
        """p and the sign sums from a checkpoint, when it has them."""
        for name, value in self.tensors().items():
            saved = checkpoint.read_tensor(path, name)
            if saved is not None:
                value.copy_(saved)
