"""Metrics of paired translation: a generator's outputs for the held-out inputs against their targets.

    ev = PairedEvaluator(dataset, n_samples=512, device=device)   # a core.paired.PairedDataset
    values = ev(sample_fn)     # sample_fn(n) -> (outputs of the first n held-out inputs, their labels | None)

Reported (every value a finite float): `l1` (mean absolute error, in the [-1, 1] pixel scale), `psnr` (dB, per
image then averaged, the images taken in [0, 1]) and `ssim` (11x11 Gaussian window, torchmetrics), `sharpness` (the
outputs' mean Sobel gradient magnitude over the targets': blurry outputs fall below 1), `n_fake` (the pairs used);
on digits data, `digit_accuracy`: the share of outputs the shipped digits classifier reads as their target's digit.
Primary: `l1` (min). `floor` holds what the targets themselves score: `digit_accuracy` (the classifier's own
accuracy on the held-out digits), `ssim` 1, `l1` 0, `sharpness` 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from core.metrics import classifier as clf
from core.paired import sobel_magnitude

SampleFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]
BATCH = 256


class PairedEvaluator:
    """The translation metrics of a paired dataset's held-out pairs; see the module docstring."""

    def __init__(self, dataset: Any, n_samples: int = 512, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.target = dataset.held_target[:n_samples].detach().float().cpu()  # (M, C, H, W)
        labels = dataset.held_labels
        self.labels = labels[:n_samples].cpu() if labels is not None else None  # (M,)
        if self.target.shape[0] < 8:
            raise ValueError(
                f"schedule.eval_every: {dataset.name} holds too few held-out pairs ({self.target.shape[0]}) to "
                "evaluate; set eval_every to 0"
            )
        self.primary: tuple[str, str] = ("l1", "min")
        self.skipped: dict[str, str] = {}
        self.classifier: clf.DigitsClassifier | None = None
        if dataset.name.startswith("digits") and self.labels is not None and self.target.shape[1] == 1:
            self.classifier = clf.load_digits_classifier(device=self.device)
        else:
            self.skipped["digit_accuracy"] = "the digits classifier reads only 1-channel digits data"
        self.floor: dict[str, float] = {"l1": 0.0, "ssim": 1.0, "sharpness": 1.0}
        if self.classifier is not None:
            self.floor["digit_accuracy"] = self._accuracy(self.target)

    @torch.no_grad()
    def _accuracy(self, x: torch.Tensor) -> float:
        """The share of images (M, 1, H, W) the digits classifier reads as their pair's label."""
        assert self.classifier is not None and self.labels is not None
        preds = [self.classifier(x[i : i + BATCH].to(self.device)).argmax(1).cpu() for i in range(0, len(x), BATCH)]
        return float((torch.cat(preds) == self.labels[: len(x)]).double().mean())

    def __call__(self, sample_fn: SampleFn) -> dict[str, float]:
        """Translate the held-out inputs with sample_fn and compare the outputs with their targets."""
        with torch.no_grad():
            out, _ = sample_fn(self.target.shape[0])
        out = out.detach().float().cpu()  # (M, C, H, W)
        if out.shape != self.target.shape:
            raise ValueError(f"eval: outputs have shape {tuple(out.shape)}, the targets {tuple(self.target.shape)}")
        if not torch.isfinite(out).all():
            raise ValueError("eval: the generator produced non-finite outputs")
        out, target = out.clamp(-1, 1), self.target
        values = {"n_fake": float(out.shape[0]), "l1": float((out - target).abs().mean())}
        unit_out, unit_target = (out + 1) / 2, (target + 1) / 2  # [0, 1]
        psnr = peak_signal_noise_ratio(
            unit_out, unit_target, data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean"
        )
        if torch.isfinite(psnr):  # an output equal to its target has no finite PSNR
            values["psnr"] = float(psnr)
        values["ssim"] = float(structural_similarity_index_measure(unit_out, unit_target, data_range=1.0))
        values["sharpness"] = float(sobel_magnitude(out).mean() / sobel_magnitude(target).mean().clamp_min(1e-12))
        if self.classifier is not None:
            values["digit_accuracy"] = self._accuracy(out)
        return values
