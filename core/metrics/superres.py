"""Metrics of super-resolution: a generator's outputs for the held-out low-resolution inputs against their
high-resolution images, beside the bicubic baseline's.

    ev = SREvaluator(dataset, n_samples=256, device=device)   # a core.superres.SRDataset with its scale set
    values = ev(sample_fn)     # sample_fn(n) -> (outputs of the first n held-out inputs, None)

Reported (every value a finite float): `psnr` (dB, per image then averaged, on every channel of the images taken in
[0, 1], no border cropped) and `ssim` (11x11 Gaussian window, torchmetrics), `sharpness` (the outputs' mean Sobel
gradient magnitude over the high-resolution images': blurry outputs fall below 1), and the same three of Pillow's
bicubic upscaling of the same inputs as `psnr_bicubic`, `ssim_bicubic`, `sharpness_bicubic` (the baseline, equal at
every evaluation, reported beside them so the series can be compared), `psnr_gain` (psnr - psnr_bicubic) and
`n_fake`. Primary: `psnr` (max). `floor` holds what the high-resolution images themselves score: `ssim` 1,
`sharpness` 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from core.paired import sobel_magnitude
from core.superres import bicubic_upscale

SampleFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]


def sr_metrics(out: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """`psnr`, `ssim` and `sharpness` of images (M, C, S, S) in [-1, 1] against their targets."""
    out, target = out.detach().float().cpu().clamp(-1, 1), target.detach().float().cpu()
    unit_out, unit_target = (out + 1) / 2, (target + 1) / 2  # [0, 1]
    psnr = peak_signal_noise_ratio(unit_out, unit_target, data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean")
    values = {"psnr": float(psnr)} if torch.isfinite(psnr) else {}  # an output equal to its target has no finite PSNR
    values["ssim"] = float(structural_similarity_index_measure(unit_out, unit_target, data_range=1.0))
    values["sharpness"] = float(sobel_magnitude(out).mean() / sobel_magnitude(target).mean().clamp_min(1e-12))
    return values


class SREvaluator:
    """The super-resolution metrics of an SRDataset's held-out images; see the module docstring."""

    def __init__(self, dataset: Any, n_samples: int = 256, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.target = dataset.held[:n_samples].detach().float().cpu()  # (M, C, S, S)
        if self.target.shape[0] < 8:
            raise ValueError(
                f"schedule.eval_every: {dataset.name} holds too few images ({self.target.shape[0]} held out) to "
                "evaluate super-resolution; set eval_every to 0"
            )
        low = dataset.held_low[:n_samples].detach().float().cpu()  # (M, C, S/r, S/r)
        self.baseline = {
            f"{k}_bicubic": v for k, v in sr_metrics(bicubic_upscale(low, dataset.scale), self.target).items()
        }
        self.primary: tuple[str, str] = ("psnr", "max")
        self.skipped: dict[str, str] = {}
        self.floor: dict[str, float] = {"ssim": 1.0, "sharpness": 1.0}

    def __call__(self, sample_fn: SampleFn) -> dict[str, float]:
        """Super-resolve the held-out inputs with sample_fn and compare the outputs with the high-resolution images."""
        with torch.no_grad():
            out, _ = sample_fn(self.target.shape[0])
        out = out.detach().float().cpu()  # (M, C, S, S)
        if out.shape != self.target.shape:
            raise ValueError(f"eval: outputs have shape {tuple(out.shape)}, the targets {tuple(self.target.shape)}")
        if not torch.isfinite(out).all():
            raise ValueError("eval: the generator produced non-finite outputs")
        values = {"n_fake": float(out.shape[0]), **sr_metrics(out, self.target), **self.baseline}
        if "psnr" in values and "psnr_bicubic" in values:
            values["psnr_gain"] = values["psnr"] - values["psnr_bicubic"]
        return values
