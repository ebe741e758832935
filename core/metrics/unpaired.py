"""Metrics of unpaired translation between domains A and B, on held-out images of each.

    ev = UnpairedEvaluator(dataset, n_samples=500, device=device)   # a core.unpaired.UnpairedDataset
    values = ev(sample_fn)

`sample_fn(n)` gives the B→A translations of the first n held-out B images and their labels; when it also has
`cycles(n)` (core.families.cyclegan.Translations), that gives both directions and both cycles
(`{"a", "ab", "aba", "b", "ba", "bab"}`), and the evaluator adds `cycle_error_a` and `cycle_error_b` (mean
|A→B→A - A| and |B→A→B - B|, in the [-1, 1] pixel scale) and, on digits, `fd_digits_b` and `label_preservation_b`.
Each direction takes up to n held-out images of its source domain (digits-printed holds out 360 handwritten and
500 printed digits).

On digits-printed, with the digits classifier: `label_preservation` (the share of B→A translations the classifier
reads as their source image's label), `fd_digits` (the Fréchet distance of the B→A translations' classifier
features to those of domain A's training images) and `fd_digits_b` (A→B translations to domain B's training
images, on the same features), with `n_fake`. The classifier learnt handwritten digits and reads printed ones
poorly (about 1 in 5), so `label_preservation_b`, the A→B direction's, reads the A→B translations with a linear
read-out of the classifier's features fitted to domain B's training images and labels (multinomial logistic
regression, deterministic): it reads held-out printed digits at about 0.99 and handwritten ones at about 0.6.
Primary: `label_preservation` (max); without the classifier, `cycle_error_a` (min). `floor`: the held-out real
images of each domain (their labels, and real against real).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from core.metrics import classifier as clf
from core.metrics.distances import fid

SampleFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]
BATCH = 256


# The reference of each distinct dataset, by its bytes and the classifier's weights: every evaluator of one built-in
# at one size in a process (a run and its resume, the next run in this process) measures the same 4,000 training
# and held-out images, and does it once.
_REFERENCES: dict[str, Reference] = {}


@dataclass(frozen=True)
class Reference:
    """What an evaluator on digits-printed measures before its first translation: each domain's training features
    as (sum, outer-product sum, N), the printed read-out fitted to domain B's, and the held-out real floors."""

    stats: dict[str, tuple[torch.Tensor, torch.Tensor, int]]
    printed: LogisticRegression
    floor: dict[str, float]


def reference_key(dataset: Any) -> str:
    """The classifier's weights and every image and label the reference is measured on."""
    digest = hashlib.sha256(clf.weights_sha256(clf.ASSET_PATH).encode())
    tensors = (dataset.store, dataset.other, dataset.other_labels, dataset.held_a, dataset.held_a_labels)
    for t in (*tensors, dataset.held_b, dataset.held_b_labels):
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def printed_share(readout: LogisticRegression | None, feats: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of images, given by their classifier features (N, 128), that the printed read-out reads as their
    labels (the first N of `labels`)."""
    assert readout is not None
    preds = readout.predict(feats.numpy())  # (N,)
    return float(np.mean(preds == labels[: len(preds)].cpu().numpy()))


class UnpairedEvaluator:
    """The translation metrics of an unpaired dataset's held-out images; see the module docstring."""

    def __init__(self, dataset: Any, n_samples: int = 500, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.n_samples = min(n_samples, max(int(dataset.held_a.shape[0]), int(dataset.held_b.shape[0])))
        self.labels_a, self.labels_b = dataset.held_a_labels, dataset.held_b_labels
        self.skipped: dict[str, str] = {}
        self.floor: dict[str, float] = {"cycle_error_a": 0.0, "cycle_error_b": 0.0}
        self.classifier: clf.DigitsClassifier | None = None
        self.printed: LogisticRegression | None = None  # reads printed digits from the classifier's features
        self.ref: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}  # domain -> (sum, outer-product sum, N)
        if not (dataset.name == "digits-printed" and dataset.channels == 1 and dataset.b_channels == 1):
            self.primary: tuple[str, str] = ("cycle_error_a", "min")
            reason = "the digits classifier reads only digits in both domains"
            names = ("label_preservation", "label_preservation_b", "fd_digits", "fd_digits_b")
            self.skipped = dict.fromkeys(names, reason)
            return
        self.primary = ("label_preservation", "max")
        self.classifier = clf.load_digits_classifier(device=self.device)
        key = reference_key(dataset)
        if key not in _REFERENCES:
            _REFERENCES[key] = self.measure_reference(dataset)
        reference = _REFERENCES[key]
        self.ref, self.printed = dict(reference.stats), reference.printed
        self.floor |= reference.floor

    def measure_reference(self, dataset: Any) -> Reference:
        """Measure `dataset`'s Reference with this evaluator's classifier (about 4,000 images)."""
        stats: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
        train_feats: dict[str, torch.Tensor] = {}
        for domain, train in (("a", dataset.store), ("b", dataset.other)):
            train_feats[domain] = self._features(train)[0]  # (N, 128)
            total = train_feats[domain].double()
            stats[domain] = (total.sum(0), total.T @ total, int(total.shape[0]))
        # A multinomial logistic regression (lbfgs from zeros): the same features give the same read-out.
        printed = LogisticRegression(C=1.0, max_iter=2000).fit(
            train_feats["b"].numpy(), dataset.other_labels.cpu().numpy()
        )
        held_a, preds = self._features(dataset.held_a)
        held_b = self._features(dataset.held_b)[0]
        floor = {
            "label_preservation": float((preds == dataset.held_a_labels.cpu()).double().mean()),
            "label_preservation_b": printed_share(printed, held_b, dataset.held_b_labels),
            "fd_digits": fid(*stats["a"], held_a),
            "fd_digits_b": fid(*stats["b"], held_b),
        }
        return Reference(stats=stats, printed=printed, floor=floor)

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 1, H, W) → classifier features (N, 128) and predicted digits (N,), on the CPU."""
        assert self.classifier is not None
        feats, preds = [], []
        for start in range(0, x.shape[0], BATCH):
            f, logits = self.classifier.features_and_logits(x[start : start + BATCH].to(self.device).clamp(-1, 1))
            feats.append(f.float().cpu())
            preds.append(logits.argmax(1).cpu())
        return torch.cat(feats), torch.cat(preds)

    def __call__(self, sample_fn: SampleFn) -> dict[str, float]:
        """Translate the held-out images with sample_fn and measure the translations."""
        cycles = getattr(sample_fn, "cycles", None)
        with torch.no_grad():
            if cycles is not None:
                sets = {k: v.detach().float().cpu() for k, v in cycles(self.n_samples).items()}
            else:
                sets = {"ba": sample_fn(self.n_samples)[0].detach().float().cpu()}
        if not all(torch.isfinite(x).all() for x in sets.values()):
            raise ValueError("eval: the generator produced non-finite outputs")
        ba = sets["ba"]  # (M, C_A, H, W)
        values = {"n_fake": float(ba.shape[0])}
        if "aba" in sets:
            values["cycle_error_a"] = float((sets["aba"] - sets["a"]).abs().mean())
            values["cycle_error_b"] = float((sets["bab"] - sets["b"]).abs().mean())
        if self.classifier is None:
            return values
        feats, preds = self._features(ba)
        values["fd_digits"] = fid(*self.ref["a"], feats)
        values["label_preservation"] = float((preds == self.labels_b[: len(preds)].cpu()).double().mean())
        if "ab" in sets:
            feats_ab = self._features(sets["ab"])[0]
            values["fd_digits_b"] = fid(*self.ref["b"], feats_ab)
            values["label_preservation_b"] = printed_share(self.printed, feats_ab, self.labels_a)
        return values
