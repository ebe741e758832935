"""Metrics of unpaired translation into domain A: a generator's translations of held-out B images.

    ev = UnpairedEvaluator(dataset, n_samples=500, device=device)   # a core.unpaired.UnpairedDataset
    values = ev(sample_fn)     # sample_fn(n) -> (B→A translations of the first n held-out B images, their labels)

Reported when domain A is digits (digits-printed), on the digits classifier: `label_preservation` (the share of
translations the classifier reads as their source image's label) and `fd_digits` (the Fréchet distance of the
translations' classifier features to those of domain A's training images), with `n_fake`. Primary:
`label_preservation` (max). `floor`: the same for domain A's own held-out images (their labels, and real against
real). Other data: nothing yet, and `skipped` says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from core.metrics import classifier as clf
from core.metrics.distances import fid

SampleFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]
BATCH = 256


class UnpairedEvaluator:
    """The B→A translation metrics of an unpaired dataset's held-out B images; see the module docstring."""

    def __init__(self, dataset: Any, n_samples: int = 500, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.n_samples = min(n_samples, int(dataset.held_b.shape[0]))
        self.primary: tuple[str, str] = ("label_preservation", "max")
        self.skipped: dict[str, str] = {}
        self.floor: dict[str, float] = {}
        self.classifier: clf.DigitsClassifier | None = None
        if not (dataset.name == "digits-printed" and dataset.channels == 1):
            reason = "the digits classifier reads only digits in domain A"
            self.skipped = {"label_preservation": reason, "fd_digits": reason}
            return
        self.classifier = clf.load_digits_classifier(device=self.device)
        ref, _ = self._features(dataset.store)  # (N, 128) of domain A's training images
        total = ref.double()
        self.ref_sum, self.ref_cov_sum, self.n_real = total.sum(0), total.T @ total, int(ref.shape[0])
        held, preds = self._features(dataset.held_a)
        self.floor = {
            "label_preservation": float((preds == dataset.held_a_labels.cpu()).double().mean()),
            "fd_digits": fid(self.ref_sum, self.ref_cov_sum, self.n_real, held),
        }

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 1, H, W) → classifier features (N, 128) and predicted digits (N,), on the CPU."""
        assert self.classifier is not None
        feats, preds = [], []
        for start in range(0, x.shape[0], BATCH):
            f, logits = self.classifier.features_and_logits(x[start : start + BATCH].to(self.device))
            feats.append(f.float().cpu())
            preds.append(logits.argmax(1).cpu())
        return torch.cat(feats), torch.cat(preds)

    def __call__(self, sample_fn: SampleFn) -> dict[str, float]:
        """Translate the held-out B images with sample_fn and measure the translations."""
        if self.classifier is None:
            return {}
        with torch.no_grad():
            out, labels = sample_fn(self.n_samples)
        out = out.detach().float().cpu()  # (M, C_A, H, W)
        if not torch.isfinite(out).all():
            raise ValueError("eval: the generator produced non-finite outputs")
        feats, preds = self._features(out.clamp(-1, 1))
        values = {"n_fake": float(out.shape[0]), "fd_digits": fid(self.ref_sum, self.ref_cov_sum, self.n_real, feats)}
        if labels is not None:
            values["label_preservation"] = float((preds == labels.cpu()).double().mean())
        return values
